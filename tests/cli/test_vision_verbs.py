"""The CLI on image classifiers: selectivity (maps, JSON, clear errors), sweep (top-1 accuracy against L1
pruning, TopoNet vs baseline), loss and downsample pick the Auto class from config.json."""

import copy
import json
import re

import pytest
import torch
from conftest import tiny_gpt_neo, tiny_resnet, tiny_vit

from hf_toponets.analysis.pruning import l1_prune
from hf_toponets.cli import main
from hf_toponets.core.config import TopoConfig
from hf_toponets.core.loss import topo_losses
from hf_toponets.core.metadata import attach_topo_config
from hf_toponets.evaluation.image_folder import read_image_folder

RESNET = TopoConfig(target_modules=["convolution"], exclude_modules=["embedder.convolution"], tau=5.0)


def save_classifier(folder, model, topo=RESNET):
    """Save ``model`` with digit labels, a topo entry and the processor, as the training script does."""
    from transformers import ConvNextImageProcessorPil

    model.config.id2label = {i: str(i) for i in range(10)}
    model.config.label2id = {str(i): i for i in range(10)}
    attach_topo_config(model, topo)
    model.save_pretrained(folder)
    ConvNextImageProcessorPil(size={"shortest_edge": 32}, crop_pct=1.0).save_pretrained(folder)
    return folder


def digit_subset(folder, digits_folder, digits="138", n=6):
    """A few digits of ``digits_folder``, ``n`` images each, as a smaller image folder."""
    for digit in digits:
        (folder / digit).mkdir(parents=True)
        for path in sorted((digits_folder / digit).iterdir())[:n]:
            (folder / digit / path.name).write_bytes(path.read_bytes())
    return folder


def test_selectivity_writes_maps_and_json(tmp_path, capsys, digits_folder):
    model = save_classifier(tmp_path / "vit", tiny_vit(seed=0), TopoConfig(target_modules=["fc2"]))
    out = tmp_path / "sel"
    images = digit_subset(tmp_path / "images", digits_folder, "0479")
    assert main(["selectivity", "--model", str(model), "--images", str(images), "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    result = json.loads((out / "selectivity.json").read_text())
    assert result["categories"] == {d: 6 for d in "0479"}
    assert list(result["layers"]) == ["vit.layers.0.mlp.fc2", "vit.layers.1.mlp.fc2"]
    for entry in result["layers"].values():
        assert entry["sheet"] == [6, 6, 144] and len(entry["t"]["7"]) == 6 and len(entry["t"]["7"][0]) == 6
        assert (out / entry["map"]).read_bytes()[:4] == b"\x89PNG"
        assert set(entry["smoothness"]) == set(result["categories"])
    assert "Moran's I" in printed and "vit.layers.1.mlp.fc2" in printed


def test_selectivity_clear_errors(tmp_path, capsys, digits_folder):
    model = save_classifier(tmp_path / "resnet", tiny_resnet())
    one = tmp_path / "one"
    (one / "faces").mkdir(parents=True)
    (one / "faces" / "a.png").write_bytes((digits_folder / "0" / sorted((digits_folder / "0").iterdir())[0].name).read_bytes())
    empty = tmp_path / "empty"
    for name in ("faces", "scenes"):
        (empty / name).mkdir(parents=True)
    (empty / "faces" / "a.png").write_bytes((one / "faces" / "a.png").read_bytes())
    (empty / "scenes" / "notes.txt").write_text("not an image")
    no_processor = tmp_path / "bare"
    tiny_resnet().save_pretrained(no_processor)
    lm = tmp_path / "lm"
    tiny_gpt_neo().save_pretrained(lm)
    capsys.readouterr()  # the saves' progress bars
    cases = [
        (model, one, r"--images .*one: found 1 category subfolder\(s\) \['faces'\]; give at least two"),
        (model, empty, r"--images .*empty: the categories \['scenes'\] hold no image"),
        (model, tmp_path / "missing", r"--images .*missing: no such folder"),
        (no_processor, digits_folder, r"has no image processor \(preprocessor_config.json\)"),
        (lm, digits_folder, r"is a text-generation model; selectivity maps need an image classifier"),
    ]
    for folder, images, match in cases:
        assert main(["selectivity", "--model", str(folder), "--images", str(images), "--output", str(tmp_path / "x")]) == 2
        err = capsys.readouterr().err.strip().splitlines()[-1]  # after transformers' loading bars: one line
        assert err.startswith("hf-toponets selectivity: error: ")
        assert re.search(match, err), err


def test_sweep_on_image_classifiers_prunes_and_measures_top1(tmp_path, capsys, digits_folder):
    topo = save_classifier(tmp_path / "topo", tiny_resnet(seed=1))
    base = save_classifier(tmp_path / "base", tiny_resnet(seed=2))
    images = digit_subset(tmp_path / "images", digits_folder)  # 3 digits, 6 images each, labelled by folder name
    out = tmp_path / "sweep"
    assert main(["sweep", "--model", str(topo), "--baseline", str(base), "--images", str(images),
                 "--sparsity", "0,0.9", "--batch-size", "8", "--output", str(out)]) == 0
    result = json.loads((out / "sweep.json").read_text())
    assert set(result) == {"TopoNet", "baseline"} and (out / "sweep.png").read_bytes()[:4] == b"\x89PNG"
    assert "TopoNet" in capsys.readouterr().out
    # second path: prune a copy by hand, classify every image by hand
    from PIL import Image
    from transformers import AutoImageProcessor, AutoModelForImageClassification

    categories = read_image_folder(images)
    processor = AutoImageProcessor.from_pretrained(topo)
    for label, folder in (("TopoNet", topo), ("baseline", base)):
        r = result[label]
        model = AutoModelForImageClassification.from_pretrained(folder).eval()
        assert r["layers"] == list(TopoConfig.from_pretrained(str(folder)).sheets) and r["sparsity"] == [0, 0.9]
        assert r["achieved_sparsity"] == pytest.approx([0, 0.9], abs=1e-3)
        for s, acc, delta in zip(r["sparsity"], r["accuracy"], r["delta_accuracy"]):
            pruned = copy.deepcopy(model)
            l1_prune(pruned, r["layers"], s)
            correct = 0
            with torch.no_grad():
                for name, paths in categories.items():
                    pixels = processor([Image.open(p).convert("RGB") for p in paths],
                                       return_tensors="pt")["pixel_values"]
                    correct += int((pruned(pixels).logits.argmax(1) == int(name)).sum())
            assert acc == pytest.approx(correct / 18) and delta == pytest.approx(acc - r["accuracy"][0])


def test_sweep_on_an_image_classifier_needs_images(tmp_path, capsys):
    topo = save_classifier(tmp_path / "topo", tiny_resnet())
    assert main(["sweep", "--model", str(topo), "--output", str(tmp_path / "s")]) == 2
    assert "is an image classifier: give --images FOLDER" in capsys.readouterr().err


def test_analyze_measures_an_image_classifiers_weights(tmp_path, capsys):
    folder = save_classifier(tmp_path / "resnet", tiny_resnet(seed=5))
    assert main(["analyze", "--model", str(folder), "--output", str(tmp_path / "a")]) == 0
    metrics = json.loads((tmp_path / "a" / "metrics.json").read_text())
    assert set(metrics["maps"]) == set(TopoConfig.from_pretrained(str(folder)).sheets)  # a map of every conv sheet
    text = tmp_path / "t.txt"
    text.write_text("some text")
    assert main(["analyze", "--model", str(folder), "--data", str(text), "--output", str(tmp_path / "b")]) == 2
    assert "is an image classifier: omit --data" in capsys.readouterr().err


def test_loss_and_downsample_load_image_classifiers(tmp_path, capsys):
    from transformers import AutoModelForImageClassification

    resnet = tiny_resnet(seed=3)
    folder = save_classifier(tmp_path / "resnet", resnet)
    assert main(["loss", "--model", str(folder)]) == 0
    printed = capsys.readouterr().out
    for name, value in topo_losses(resnet, RESNET).items():
        assert re.search(rf"^{re.escape(name)} +{float(value):.6f}$", printed, re.M), name
    assert main(["downsample", "--model", str(folder), "--output", str(tmp_path / "no")]) == 2
    assert "Conv2d sheets" in capsys.readouterr().err
    vit = save_classifier(tmp_path / "vit", tiny_vit(seed=4), TopoConfig(target_modules=["fc1"]))
    assert main(["downsample", "--model", str(vit), "--keep", "0.25", "--output", str(tmp_path / "small")]) == 0
    small = AutoModelForImageClassification.from_pretrained(tmp_path / "small")
    assert small.config.intermediate_size < 144 and (tmp_path / "small" / "preprocessor_config.json").is_file()
