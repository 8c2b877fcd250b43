"""StepCache: a step runs once per set of inputs, reruns when they change or its outputs vanish, and a
step that fails leaves no record (so an interrupted run resumes there)."""

import json

import pytest

from hf_toponets.training.steps import StepCache, step_key


class Counter:
    def __init__(self, value):
        self.calls, self.value = 0, value

    def __call__(self):
        self.calls += 1
        return {"value": self.value}


def test_done_steps_are_read_not_rerun(tmp_path):
    lines = []
    compute = Counter(1)
    assert StepCache(tmp_path, total=1, log=lines.append).run("a", {"x": 1}, compute) == {"value": 1}
    cache = StepCache(tmp_path, total=1, log=lines.append)  # a new run
    assert cache.run("a", {"x": 1}, compute) == {"value": 1} and compute.calls == 1
    assert cache.records["a"]["cached"] and lines[-1].startswith("[1/1] a: cached")
    record = json.loads((tmp_path / "a.json").read_text())
    assert record["key"] == step_key({"x": 1}) and record["inputs"] == {"x": 1} and record["seconds"] >= 0


def test_changed_inputs_or_missing_outputs_rerun(tmp_path):
    output = tmp_path / "model.bin"
    output.write_text("weights")
    first, second, third = Counter(1), Counter(2), Counter(3)
    StepCache(tmp_path, log=print).run("a", {"x": 1}, first, outputs=[output])
    assert StepCache(tmp_path, log=print).run("a", {"x": 2}, second, outputs=[output]) == {"value": 2}
    output.unlink()
    assert StepCache(tmp_path, log=print).run("a", {"x": 2}, third, outputs=[output]) == {"value": 3}
    assert (first.calls, second.calls, third.calls) == (1, 1, 1)


def test_a_failed_step_leaves_no_record(tmp_path):
    def interrupted():
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        StepCache(tmp_path, log=print).run("a", {"x": 1}, interrupted)
    assert not (tmp_path / "a.json").exists()
    compute = Counter(1)
    StepCache(tmp_path, log=print).run("a", {"x": 1}, compute)
    assert compute.calls == 1


def test_read_only_cache_writes_nothing(tmp_path):
    StepCache(tmp_path, log=print, write=False).run("a", {"x": 1}, Counter(1))
    assert not list(tmp_path.iterdir())


def test_keys_ignore_dict_order_only():
    assert step_key({"a": 1, "b": [1, 2]}) == step_key({"b": [1, 2], "a": 1}) != step_key({"a": 1, "b": [2, 1]})
    assert step_key({"a": float("nan")}) == step_key({"a": float("nan")}) != step_key({"a": None})
