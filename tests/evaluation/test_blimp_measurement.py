"""BLiMP as an evaluate measurement: loaded offline from the package, the same numbers as evaluate_blimp."""

import json

import pytest

from conftest import tiny_gpt_neo
from hf_toponets.evaluation.blimp import evaluate_blimp
from test_blimp import gpt2_tokenizer, write_jsonl


def test_the_measurement_gives_evaluate_blimps_numbers(tmp_path, shared_data):
    evaluate = pytest.importorskip("evaluate")
    from hf_toponets.evaluation.blimp_measurement import PATH

    model, tokenizer = tiny_gpt_neo(seed=4, vocab=50257), gpt2_tokenizer(shared_data)
    model.save_pretrained(tmp_path / "model")
    tokenizer.save_pretrained(tmp_path / "model")
    data = write_jsonl(tmp_path / "data")
    blimp = evaluate.load(PATH, module_type="measurement")
    got = blimp.compute(paradigms=["passive_1", "wh_island"], model_id=str(tmp_path / "model"), data=str(data), batch_size=4)
    expected = evaluate_blimp(model, tokenizer, data, ["passive_1", "wh_island"], 4, progress=False)
    assert json.loads(json.dumps(got)) == json.loads(json.dumps(expected))
    assert got["paradigms"]["passive_1"]["n"] == 3
