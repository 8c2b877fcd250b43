"""training_scripts/reproduce.py: a short tau sweep writes a complete report; cached steps are skipped
(counted calls), an interrupted run resumes, and the figures plot what the library's functions return."""

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "training_scripts"))

import reproduce  # noqa: E402
import train_clm  # noqa: E402

import hf_toponets.analysis.reproduction as reproduction  # noqa: E402
import hf_toponets.training.reproduce as pipeline  # noqa: E402
from hf_toponets.analysis.report import analyze  # noqa: E402
from hf_toponets.analysis.sweep import make_evaluate, sweep_model  # noqa: E402
from hf_toponets.evaluation.blimp_data import PARADIGMS  # noqa: E402
from hf_toponets.evaluation.perplexity import perplexity  # noqa: E402
from hf_toponets.hub.loading import load_pretrained  # noqa: E402
from hf_toponets.training.held_out import held_out_blocks  # noqa: E402

PNG = b"\x89PNG\r\n\x1a\n"
# words that the embedded corpus's BPE (vocabulary 1000) keeps whole, so that the windows' word swaps find some
NOUNS, VERBS = ["object", "function", "value", "module", "class", "method"], ["returns", "takes", "uses", "defines"]
ADJECTIVES, PLACES = ["new", "first", "same", "other"], ["time", "code", "files"]
# a short, constant tau (the default warms tau up over 50 steps) and a tiny vocabulary
TRAIN_FLAGS = ["--max_steps", "3", "--tokenizer_vocab_size", "1000", "--eval_blocks", "8", "--per_device_train_batch_size", "2",
               "--tau_schedule", "constant:1:1:1", "--learning_rate", "0.01", "--logging_steps", "1"]


def fake_blimp(folder: Path) -> Path:
    """67 paradigms of 3 distinct made-up pairs each (8-word sentences), in the published jsonl format."""
    folder.mkdir()
    for i, uid in enumerate(PARADIGMS):
        rows = []
        for j in range(3):
            k = 3 * i + j
            a, b, verb, adj, place = NOUNS[k % 6], NOUNS[(k // 6) % 6], VERBS[k % 4], ADJECTIVES[(k // 36) % 4], PLACES[k % 3]
            good = f"The {adj} {a} {verb} the {b} in {place}."
            rows.append({"sentence_good": good, "sentence_bad": good.replace(verb, verb[:-1]), "pairID": str(j), "UID": uid})
        (folder / f"{uid}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


class Calls:
    """Counts the calls of the pipeline's expensive functions (still running them); ``fail`` makes one raise."""

    NAMES = ("analyze", "sweep_model", "evaluate_blimp", "perplexity", "measure_windows", "write_report")

    def __init__(self, monkeypatch):
        self.counts, self.fail = {}, None
        real_train = train_clm.main

        def train(argv):
            self.counts["train"] = self.counts.get("train", 0) + 1
            return real_train(argv)

        monkeypatch.setattr(train_clm, "main", train)
        for name in self.NAMES:
            monkeypatch.setattr(pipeline, name, self.counted(name, getattr(pipeline, name)))

    def counted(self, name, fn):
        def wrapper(*args, **kwargs):
            if self.fail == name:
                raise KeyboardInterrupt(name)
            self.counts[name] = self.counts.get(name, 0) + 1
            return fn(*args, **kwargs)
        return wrapper

    def take(self) -> dict:
        counts, self.counts = self.counts, {}
        return counts


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Run the pipeline as a user would, five times; returns what each run computed."""
    tmp = tmp_path_factory.mktemp("reproduce")
    common = ["--output_dir", str(tmp / "out"), "--held-out-blocks", "4", "--blimp-data", str(fake_blimp(tmp / "blimp")),
              "--windows-sequences", "2", *TRAIN_FLAGS]
    out = {"tmp": tmp, "args": ["--keeps", "1,0.4", *common]}
    with pytest.MonkeyPatch.context() as mp:
        calls = Calls(mp)
        out["first"] = reproduce.main(["--taus", "0,50", "--keeps", "1,0.5", *common])
        out["first_calls"] = calls.take()
        reproduce.main(["--taus", "0,50", "--keeps", "1,0.5", *common])
        out["rerun_calls"] = calls.take()
        calls.fail = "analyze"  # a third tau, interrupted during its analysis
        with pytest.raises(KeyboardInterrupt):
            reproduce.main(["--taus", "0,5,50", "--keeps", "1,0.5", *common])
        out["interrupted_calls"] = calls.take()
        calls.fail = None
        reproduce.main(["--taus", "0,5,50", "--keeps", "1,0.5", *common])
        out["resumed_calls"] = calls.take()
        out["final"] = reproduce.main(["--taus", "0,5,50", *out["args"]])  # other keeps: only the sweeps
        out["keeps_calls"] = calls.take()
    return out


@pytest.mark.slow
def test_the_report_is_complete(runs):
    report_dir = runs["tmp"] / "out" / "report"
    report = json.loads((report_dir / "report.json").read_text())
    assert report == json.loads(json.dumps(runs["final"]))
    assert set(report) == {"description", "settings", "held_out", "blimp_paradigms", "steps", "summary", "correlations",
                           "figures", "models"}
    assert list(report["models"]) == list(report["summary"]) == ["0", "5", "50"]
    assert set(report["figures"]) == {"fig2b", "fig3", "fig4"} and len(report["correlations"]) == 8
    for file in [*report["figures"].values()]:
        assert (report_dir / file).read_bytes()[:8] == PNG
    for m in report["models"].values():
        assert set(m) == {"folder", "train", "evaluate", "analysis", "sweep", "windows"} and m["train"]["steps"] == 3
        assert m["windows"]["n_sequences"] == 2 and set(m["windows"]["layers"]) == set(m["analysis"]["layers"])
        for png in [*m["analysis"]["maps"].values(), m["analysis"]["curves"], *m["windows"]["maps"].values()]:
            assert (runs["tmp"] / "out" / m["analysis"]["folder"] / png).read_bytes()[:8] == PNG
    assert len(report["blimp_paradigms"]) == 12 and report["held_out"]["blocks"] == 4
    assert set(report["steps"]) == {f"{s}_tau{t}" for s in ("train", "evaluate", "analyze", "sweep", "windows")
                                    for t in (0, 5, 50)}
    readme = (report_dir / "README.md").read_text()
    for file in report["figures"].values():
        assert f"]({file})" in readme
    for s in report["summary"].values():  # every number is in the table
        for key, spec in (("perplexity", ".2f"), ("blimp", ".3f"), ("smoothness_weights", ".3f"), ("effective_dim", ".2f")):
            assert format(s[key], spec) in readme


@pytest.mark.slow
def test_finished_steps_are_skipped_and_an_interrupted_run_resumes(runs):
    assert runs["first_calls"] == {"train": 2, "perplexity": 2, "evaluate_blimp": 2, "analyze": 2, "sweep_model": 2,
                                   "measure_windows": 2, "write_report": 1}
    assert runs["rerun_calls"] == {}  # nothing changed: nothing recomputed, not even the figures
    # tau 5: trained and evaluated, then interrupted in analyze; the rerun does its analysis and sweep only
    assert runs["interrupted_calls"] == {"train": 1, "perplexity": 1, "evaluate_blimp": 1}
    assert runs["resumed_calls"] == {"analyze": 1, "sweep_model": 1, "measure_windows": 1, "write_report": 1}
    assert runs["keeps_calls"] == {"sweep_model": 3, "write_report": 1}


@pytest.mark.slow
def test_the_figures_plot_the_functions_outputs(runs, monkeypatch, tmp_path):
    drawn = {}
    monkeypatch.setattr(reproduction, "plot_scatter", lambda panels, path, **k: drawn.setdefault(Path(path).stem, panels))
    monkeypatch.setattr(reproduction, "plot_sweep", lambda panels, path, *a, **k: drawn.setdefault(Path(path).stem, panels))
    out = runs["tmp"] / "out"
    (out / "steps" / "report.json").unlink()  # all the rest cached: only the report is drawn again
    report = reproduce.main(["--taus", "0,5,50", *runs["args"]])
    models = {tau: load_pretrained(str(out / "models" / f"tau{tau}")) for tau in (0, 5, 50)}
    tokenizer = pipeline.shared_tokenizer({t: {"folder": str(out / "models" / f"tau{t}")} for t in models})
    held_out, _ = reproduce.held_out_and_blimp(reproduce.build_parser().parse_known_args(runs["args"])[0],
                                               train_clm.parse(TRAIN_FLAGS)[0])
    ids, _ = held_out_blocks(tokenizer, held_out.documents, 128, 4)
    ppl = [perplexity(m, ids) for m in models.values()]
    metrics = [analyze(m, tmp_path / str(t), None, ids, progress=False)["layers"] for t, m in models.items()]
    smooth = [np.mean([layer["smoothness_activations"] for layer in m.values()]) for m in metrics]
    dims = [np.mean([layer["effective_dim"] for layer in m.values()]) for m in metrics]
    # Fig. 2B, panel 2: smoothness of the activations (x) against held-out perplexity (y), one point per tau
    panel = drawn["fig2b_smoothness_vs_performance"][1]
    assert panel.labels == ["tau=0", "tau=5", "tau=50"] and panel.ylabel.startswith("held-out perplexity")
    assert panel.x == pytest.approx(smooth, rel=1e-5) and panel.y == pytest.approx(ppl, rel=1e-5)
    # Fig. 3, panel 1: held-out perplexity (x) against effective dimensionality (y), with numpy's r in the title
    panel = drawn["fig3_dimensionality"][0]
    assert panel.x == pytest.approx(ppl, rel=1e-5) and panel.y == pytest.approx(dims, rel=1e-5)
    r = report["correlations"]["effective_dim_vs_perplexity"]["r"]
    assert r == pytest.approx(np.corrcoef(ppl, dims)[0, 1], abs=1e-9) and f"r = {r:+.2f}" in panel.title
    # Fig. 4: the L1 pruning panel is sweep_model's change in perplexity
    sweep = sweep_model(models[50], [1, 0.4], make_evaluate(tokenizer, ids))
    x, y = drawn["fig4_compression"]["change in perplexity, L1 pruning"]["tau=50"]
    points = sweep["points"]
    assert x == [p["kept_fraction"] for p in points]
    assert y == pytest.approx([p["methods"]["prune"]["metrics"]["perplexity"] - sweep["metrics"]["perplexity"]
                               for p in points], rel=1e-5, abs=1e-6)
    assert not math.isnan(report["correlations"]["effective_dim_vs_perplexity"]["p"])


@pytest.mark.slow
def test_models_with_different_tokenizers_are_refused(runs, tmp_path):
    from transformers import AutoTokenizer

    other = train_clm.train_tokenizer(["completely different words here"] * 50, 300)
    other.save_pretrained(tmp_path / "other")
    folders = {0.0: {"folder": str(runs["tmp"] / "out" / "models" / "tau0")}, 5.0: {"folder": str(tmp_path / "other")}}
    assert AutoTokenizer.from_pretrained(tmp_path / "other").get_vocab()
    with pytest.raises(ValueError, match=r"the models at tau \[5.0\] have another tokenizer than tau 0.0"):
        pipeline.shared_tokenizer(folders)


def test_a_training_folder_keeps_only_its_own_checkpoints(tmp_path):
    folder = tmp_path / "tau5"
    (folder / "checkpoint-10").mkdir(parents=True)
    pipeline.claim_folder(folder, "key-a")  # an unclaimed folder: its checkpoints are of unknown origin
    assert not (folder / "checkpoint-10").exists() and (folder / "reproduce_key.txt").read_text() == "key-a"
    (folder / "checkpoint-20").mkdir()  # an interrupted run of the same training: resumed from here
    pipeline.claim_folder(folder, "key-a")
    assert (folder / "checkpoint-20").is_dir()
    pipeline.claim_folder(folder, "key-b")  # another configuration: the old checkpoints go
    assert not (folder / "checkpoint-20").exists() and (folder / "reproduce_key.txt").read_text() == "key-b"


@pytest.mark.parametrize("kwargs, match", [({"taus": []}, "taus must be distinct numbers >= 0"),
                                           ({"taus": [0, 0]}, "taus must be distinct"),
                                           ({"keeps": [1.5]}, "keep: give fractions in"),
                                           ({"held_out_blocks": 0}, "held_out_blocks must be an int >= 1"),
                                           ({"windows_sequences": -1}, "windows_sequences must be an int >= 0")])
def test_bad_settings(kwargs, match):
    with pytest.raises(ValueError, match=match):
        pipeline.ReproductionSettings(**kwargs)
