"""hf_toponets.hub.cards: the card is built from plain data, sections appear exactly when their data exists,
the metadata parses back with huggingface_hub, and a folder's files feed write_model_card."""

import json
import math
import re

import pytest
from huggingface_hub import ModelCard

from hf_toponets.hub.cards import check_results, render_card, template_path
from hf_toponets.hub.folder import read_model_folder, write_model_card
from hf_toponets.core.config import TopoConfig

SHEETS = {"transformer.h.0.mlp.c_fc": [8, 16, 32], "transformer.h.1.mlp.c_fc": [4, 8, 16]}
TOPO = TopoConfig(target_modules=["c_fc"], tau=0.5, factor_h=3, factor_w=2,
                  tau_schedule=["linear:100:0:1", "constant:50:1"]).with_sheets(SHEETS).to_dict()
BLIMP = {"overall": 0.6875, "phenomena": {"island_effects": 0.5, "anaphor_agreement": 0.875},
         "paradigms": {"adjunct_island": {"accuracy": 0.5, "n": 1000}, "anaphor_number_agreement": {"accuracy": 0.875, "n": 1000}}}
METRICS = {"layers": {name: {"sheet": shape, "smoothness_weights": 0.125 * (i + 1), "smoothness_activations": None,
                             "effective_dim": 10.0 + i} for i, (name, shape) in enumerate(SHEETS.items())},
           "maps": {"transformer.h.0.mlp.c_fc": "maps/h0.png"}, "curves": "maps/curves.png", "n_samples": 256}
TRAINING = {"base_model": "EleutherAI/gpt-neo-125m", "datasets": ["roneneldan/TinyStories"], "license": "mit",
            "max_steps": 1000, "tokens_seen": 2_048_000}
SECTIONS = {"training": "## Training", "results": "## Results", "blimp": "### BLiMP", "smoothness": "## Topography",
            "maps": "## Maps"}


def sections(text: str) -> set[str]:
    return {name for name, header in SECTIONS.items() if re.search(f"^{re.escape(header)}$", text, re.M)}


CASES = [  # (inputs, the optional sections they must produce)
    ({}, {"training"}),  # the topo entry's tau schedule is training information
    ({"blimp": BLIMP}, {"training", "results", "blimp"}),
    ({"perplexity": 21.5}, {"training", "results"}),
    ({"metrics": METRICS}, {"training", "smoothness", "maps"}),
    ({"metrics": {**METRICS, "layers": {}}}, {"training", "maps"}),
    ({"metrics": {**METRICS, "maps": {}, "curves": None}}, {"training", "smoothness"}),
    ({"training": TRAINING, "blimp": BLIMP, "metrics": METRICS, "perplexity": 21.5}, set(SECTIONS)),
]


@pytest.mark.parametrize("inputs, expected", CASES)
def test_sections_appear_exactly_when_their_data_exists(inputs, expected):
    text = str(render_card(TOPO, "gpt_neo", **inputs))
    assert sections(text) == expected
    assert "More Information Needed" not in text and "None" not in text
    for always in ("## Topographic layers", "## How to use", "## Citation", "ICLR", "AutoModelForCausalLM.from_pretrained"):
        assert always in text


def test_without_a_schedule_there_is_no_training_section():
    topo = {**TOPO, "tau_schedule": []}
    assert sections(str(render_card(topo, "gpt2"))) == set()


def test_metadata_and_model_index_parse_back_with_the_measured_values(tmp_path):
    card = render_card(TOPO, "gpt_neo", model_id="alice/topo-neo", training=TRAINING, blimp=BLIMP, perplexity=21.53219)
    card.save(tmp_path / "README.md")
    data = ModelCard.load(tmp_path / "README.md").data
    assert (data.library_name, data.pipeline_tag, data.license) == ("transformers", "text-generation", "mit")
    assert data.tags == ["toponets", "topographic", "hf_toponets", "gpt_neo"]
    assert (data.base_model, data.datasets) == ("EleutherAI/gpt-neo-125m", ["roneneldan/TinyStories"])
    results = {r.metric_type: r for r in data.eval_results}
    assert results["accuracy"].metric_value == BLIMP["overall"] and results["accuracy"].dataset_type == "nyu-mll/blimp"
    assert results["perplexity"].metric_value == 21.5322
    assert results["perplexity"].dataset_type == "roneneldan/TinyStories"  # defaults to the first training set
    assert data.model_name == "topo-neo"


def test_without_measurements_there_is_no_model_index():
    data = render_card(TOPO, "gpt_neo").data.to_dict()
    assert "model-index" not in data and "model_name" not in data and "base_model" not in data


def test_tables_hold_every_layer_and_phenomenon():
    text = str(render_card(TOPO, "gpt_neo", blimp=BLIMP, metrics=METRICS))
    for name, (h, w, d) in SHEETS.items():  # oracle: the sheet written out by hand
        assert f"| `{name}` | {h} x {w} x {d} | 3 x 2 | 0.5 |" in text
    for name, acc in BLIMP["phenomena"].items():
        assert f"| {name} | {100 * acc:.1f}% |" in text
    assert "**68.8%** overall" in text and "2 paradigms and 2,000 pairs" in text
    # smoothness table: the all-None activation column is dropped
    assert "| Layer | Smoothness (weights) | Effective dimensionality |" in text
    assert "| `transformer.h.1.mlp.c_fc` | 0.250 | 11.0 |" in text and "(256 samples)" in text
    assert "![transformer.h.0.mlp.c_fc](maps/h0.png)" in text and "](maps/curves.png)" in text
    assert "linear 0 -> 1 over 100 steps, then constant 1 over 50 steps" in text


def test_usage_code_names_the_repo_and_runs_against_a_local_folder(tmp_path):
    from conftest import tiny_gpt2

    from hf_toponets.core.metadata import attach_topo_config

    model = tiny_gpt2()
    attach_topo_config(model, TopoConfig(target_modules=["c_fc"]))
    model.save_pretrained(tmp_path)
    text = str(render_card(model.config.topo, "gpt2", model_id="alice/gpt2-topo"))
    code = re.search(r"```python\n(.*?)```", text, re.S).group(1)
    assert code.count('"alice/gpt2-topo"') == 2
    scope = {}
    exec(code.replace('"alice/gpt2-topo"', repr(str(tmp_path))), scope)  # the snippet itself, on a local copy
    assert {k: tuple(v.shape) for k, v in scope["sheets"].items()} == {k: tuple(v) for k, v in model.config.topo["sheets"].items()}


BAD_RESULTS = [  # (blimp, metrics, the error's words)
    ({"overall": 68.75}, None, "blimp 'overall' must be an accuracy in \\[0, 1\\]"),
    ({"overall": 0.5, "phenomena": {"island_effects": "high"}}, None, "phenomenon 'island_effects'"),
    ({"overall": 0.5, "paradigms": {"adjunct_island": {"accuracy": 0.5}}}, None, "paradigm 'adjunct_island'"),
    (None, {"layers": {"lm_head": {}}}, "\\['lm_head'\\] that are not topographic"),
    (None, {"maps": {"transformer.h.5.mlp.c_fc": "maps/x.png"}}, "not topographic in this model"),
    (None, {"layers": {"transformer.h.0.mlp.c_fc": {"sheet": [16, 8, 32]}}}, "belong to another model"),
    (None, {"maps": {"transformer.h.0.mlp.c_fc": "../x.png"}}, "directly under maps/"),
    (None, {"curves": "maps/curves.svg"}, "must be a PNG"),
    ([0.5], None, "blimp results must be a JSON object"),
    (None, {"layers": {"transformer.h.0.mlp.c_fc": 0.5}}, "must be an object of measurements"),
]


@pytest.mark.parametrize("blimp, metrics, message", BAD_RESULTS)
def test_results_that_do_not_fit_the_model_are_refused(blimp, metrics, message):
    with pytest.raises(ValueError, match=message):
        check_results(TopoConfig.from_dict(TOPO), blimp, metrics, source="test")
    with pytest.raises(ValueError, match=message):
        render_card(TOPO, "gpt_neo", blimp=blimp, metrics=metrics)


@pytest.mark.parametrize("kwargs, message", [
    ({"training": {"epochs": 3}}, "unknown keys \\['epochs'\\]"),
    ({"perplexity": 0.5}, "perplexity must be a finite number >= 1"),
    ({"perplexity": math.nan}, "perplexity must be a finite number >= 1"),
])
def test_bad_arguments_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        render_card(TOPO, "gpt_neo", **kwargs)


def test_topo_without_sheets_is_refused():
    with pytest.raises(ValueError, match="no sheets"):
        render_card({**TOPO, "sheets": None}, "gpt_neo")


def write_folder(folder, topo=TOPO, **files):
    folder.mkdir(exist_ok=True)
    (folder / "config.json").write_text(json.dumps({"model_type": "gpt_neo", "topo": topo}))
    for name, data in files.items():
        (folder / name.replace("_json", ".json")).write_text(json.dumps(data))
    return folder


def test_write_model_card_reads_the_folder(tmp_path):
    state = {"global_step": 40, "num_input_tokens_seen": 81920,
             "log_history": [{"eval_loss": 3.0}, {"loss": 2.9}, {"eval_loss": 2.5, "eval_blimp/overall": 0.75,
                                                                 "eval_blimp/island_effects": 0.5}]}
    folder = write_folder(tmp_path / "m", trainer_state_json=state)
    readme = write_model_card(folder, training={"datasets": ["roneneldan/TinyStories"]})
    card = ModelCard.load(readme)
    values = {r.metric_type: r.metric_value for r in card.data.eval_results}
    assert values == {"perplexity": round(math.exp(2.5), 4), "accuracy": 0.75}  # the last evaluation
    assert "Steps: 40." in card.text and "Tokens seen: 81,920." in card.text and "| island_effects | 50.0% |" in card.text
    assert [p.name for p in folder.iterdir() if p.name.startswith(".")] == []  # no temporary file left

    write_folder(folder, trainer_state_json=state, blimp_results_json=BLIMP)  # a full BLiMP run wins over the log
    card = ModelCard.load(write_model_card(folder, results={"perplexity": 9.0}))  # explicit results win over files
    values = {r.metric_type: r.metric_value for r in card.data.eval_results}
    assert values == {"perplexity": 9.0, "accuracy": BLIMP["overall"]}
    assert card.data.datasets == ["roneneldan/TinyStories"]  # kept from the previous card


def test_rewriting_a_card_keeps_what_only_the_trainer_knew(tmp_path):
    folder = write_folder(tmp_path / "m", blimp_results_json=BLIMP)
    first = write_model_card(folder, training=TRAINING, model_id="alice/topo").read_bytes()
    again = write_model_card(folder).read_bytes()
    assert again == first
    assert read_model_folder(folder)["training"] == TRAINING


def test_cli_card_writes_the_same_card_elsewhere(tmp_path, capsys):
    from hf_toponets.cli import main

    folder = write_folder(tmp_path / "m", blimp_results_json=BLIMP)
    readme = write_model_card(folder, training=TRAINING, model_id="alice/topo")
    assert main(["card", "--model", str(folder), "--output", str(tmp_path / "example.md")]) == 0
    assert (tmp_path / "example.md").read_bytes() == readme.read_bytes()
    assert capsys.readouterr().out.strip() == str(tmp_path / "example.md")
    assert main(["card", "--model", str(tmp_path)]) == 2  # no config.json: one clear line, no traceback
    assert "no config.json" in capsys.readouterr().err


def test_a_hand_written_readme_is_not_read_back(tmp_path):
    folder = write_folder(tmp_path / "m")
    (folder / "README.md").write_text("---\nhf_toponets:\n  training:\n    license: gpl\n---\nmine\n")
    assert read_model_folder(folder)["training"] == {}


def test_a_failed_write_leaves_the_old_card(tmp_path):
    folder = write_folder(tmp_path / "m")
    old = write_model_card(folder).read_bytes()
    (folder / "metrics.json").write_text(json.dumps({"layers": {"lm_head": {}}}))
    with pytest.raises(ValueError, match="not topographic"):
        write_model_card(folder)
    assert (folder / "README.md").read_bytes() == old and len(list(folder.iterdir())) == 3


@pytest.mark.parametrize("config, message", [
    (None, "no config.json"),
    ({"model_type": "gpt2"}, "no 'topo' entry"),
])
def test_write_model_card_needs_a_topo_net(tmp_path, config, message):
    if config is not None:
        (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=message):
        write_model_card(tmp_path)


def test_the_template_ships_beside_the_package_or_the_checkout():
    path = template_path()
    assert path.name == "toponet_card.md.j2" and path.parent.name == "model_cards"
