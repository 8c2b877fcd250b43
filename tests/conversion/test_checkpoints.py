"""convert_checkpoint end to end: small models saved exactly as the paper's files are, converted, reloaded
with plain transformers Auto classes, compared with the source modules' own forwards."""

import json
import os
import warnings

import pytest
import torch
from torch import nn

import hf_toponets  # noqa: F401  (registers the BlurPool ResNet with the Auto classes)
from conftest import SHARED_DATA
from hf_toponets import TopoConfig
from hf_toponets.conversion.checkpoints import SOURCE_KEY, convert_checkpoint
from hf_toponets.core.version import __version__
from published import (TinyResNet, Bottleneck, NanoGPT, save_nanogpt, save_resnet, save_vit, topographic_nanogpt,
                       topographic_resnet, topographic_vit)
from transformers import AutoModelForCausalLM, AutoModelForImageClassification, GenerationConfig

TOKENIZER = SHARED_DATA / "gpt2-tokenizer"


def convert_quietly(*args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a scan disagreement would be a failure here
        return convert_checkpoint(*args, **kwargs)


@pytest.fixture(scope="module")
def nanogpt_folder(tmp_path_factory):
    """(source module, checkpoint path, converted folder): the paper's NanoGPT layout, tau in the file name."""
    root = tmp_path_factory.mktemp("nanogpt")
    model = topographic_nanogpt()
    save_nanogpt(model, root / "tau_50.0.pt")
    tokenizer = str(TOKENIZER) if TOKENIZER.is_dir() else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # only the missing-tokenizer warning when the shared data is absent
        convert_checkpoint(root / "tau_50.0.pt", root / "converted", tokenizer=tokenizer)
    return model, root / "tau_50.0.pt", root / "converted"


def test_nanogpt_logits_at_every_position_and_padded_id(nanogpt_folder):
    source, _, folder = nanogpt_folder
    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    assert type(model).__name__ == "GPT2LMHeadModel" and model.config.activation_function == "gelu"
    ids = torch.randint(50304, (3, 32), generator=torch.Generator().manual_seed(1))
    ids[:, -4:] = torch.tensor([50256, 50257, 50300, 50303])  # GPT-2's last id and the padding rows
    with torch.no_grad():
        expected, got = source(ids), model(ids).logits
    assert got.shape == expected.shape == (3, 32, 50304)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)


@pytest.mark.parametrize("make, size", [
    (lambda: topographic_resnet(), 64),
    (lambda: topographic_resnet(block=Bottleneck, depths=(1, 2, 1), width=16), 64),
    (lambda: topographic_resnet(blurpool=False), 48),  # a plain torchvision ResNet: transformers' own class
])
def test_resnet_logits(tmp_path, make, size):
    source = make()
    save_resnet(source, tmp_path / "all_topo_tau_0.5.pt")
    result = convert_quietly(tmp_path / "all_topo_tau_0.5.pt", tmp_path / "converted")
    model = AutoModelForImageClassification.from_pretrained(tmp_path / "converted").eval()
    blurred = any(k.endswith("blur_filter") for k in source.state_dict())
    assert type(model).__name__ == result.architecture == ("BlurPool" if blurred else "") + "ResNetForImageClassification"
    images = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        torch.testing.assert_close(model(images).logits, source(images), rtol=0, atol=1e-4)
    convs = {n for n, m in model.named_modules() if isinstance(m, nn.Conv2d) and ".stages." in n}
    assert set(result.sheets) == convs  # every convolution of the residual blocks, shortcuts included


def test_vit_logits_and_heads_from_the_trainer_args(tmp_path):
    source = topographic_vit()  # 48 wide: vit_b_32's 12 heads of 4
    save_vit(source, tmp_path / "tau_10.0.pt", model_name="vit_b_32")
    result = convert_quietly(tmp_path / "tau_10.0.pt", tmp_path / "converted")
    model = AutoModelForImageClassification.from_pretrained(tmp_path / "converted").eval()
    assert model.config.num_attention_heads == 12 and model.config.image_size == 32 and model.config.patch_size == 8
    images = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        torch.testing.assert_close(model(images).logits, source(images), rtol=0, atol=1e-4)
    assert list(result.sheets) == ["vit.layers.0.mlp.fc2", "vit.layers.1.mlp.fc2"]  # mlp.3, not mlp.0
    assert result.sheets["vit.layers.0.mlp.fc2"] == [6, 8, 96]


def test_vit_head_count_when_args_do_not_name_a_torchvision_model(tmp_path):
    save_vit(topographic_vit(d=32, heads=4, mlp=64), tmp_path / "tau_10.0.pt", model_name="my_vit")
    with pytest.raises(ValueError, match="pass num_heads"):
        convert_checkpoint(tmp_path / "tau_10.0.pt", tmp_path / "a")
    result = convert_quietly(tmp_path / "tau_10.0.pt", tmp_path / "b", num_heads=4)
    assert result.logit_difference < 1e-5
    assert not (tmp_path / "a").exists()


def test_topo_entry_and_provenance(nanogpt_folder):
    _, path, folder = nanogpt_folder
    topo = TopoConfig.from_pretrained(folder)
    assert topo.tau == 50.0 and topo.target_modules == ["c_fc"]
    assert topo.sheets == {f"transformer.h.{i}.mlp.c_fc": [8, 16, 32] for i in range(2)}
    config = json.loads((folder / "config.json").read_text())
    source = config[SOURCE_KEY]
    import hashlib

    assert source["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert (source["file"], source["format"], source["container"]) == ("tau_50.0.pt", "nanogpt", "nanogpt train.py")
    assert source["converter"] == f"hf_toponets {__version__}"
    assert source["logit_max_abs_diff"] <= 1e-5 and source["scan_agrees"] is True
    assert len(source["layer_scan"]) == 2 * 4 + 1  # c_attn, attn.c_proj, c_fc, mlp.c_proj per block, lm_head
    assert max(source["layer_scan"][n] for n in topo.sheets) < 0.2 < min(
        v for n, v in source["layer_scan"].items() if n not in topo.sheets)


def test_card_credits_the_source_and_shows_the_scan(nanogpt_folder):
    _, _, folder = nanogpt_folder
    source = json.loads((folder / "config.json").read_text())[SOURCE_KEY]
    card = (folder / "README.md").read_text()
    assert "tau_50.0.pt" in card and source["sha256"] in card


def test_tokenizer_and_padding_ids(nanogpt_folder, shared_data):
    _, _, folder = nanogpt_folder
    generation = GenerationConfig.from_pretrained(folder)
    assert generation.suppress_tokens == list(range(50257, 50304))  # the 47 padding ids are never generated
    assert generation.eos_token_id == generation.bos_token_id == 50256
    from transformers import AutoTokenizer

    assert len(AutoTokenizer.from_pretrained(folder)) == 50257


def test_image_processor_reproduces_the_evaluation_transform(tmp_path):
    save_resnet(topographic_resnet(), tmp_path / "all_topo_tau_1.0.pt")
    convert_quietly(tmp_path / "all_topo_tau_1.0.pt", tmp_path / "converted")
    config = json.loads((tmp_path / "converted" / "preprocessor_config.json").read_text())
    assert config["size"] == {"shortest_edge": 256} and config["crop_size"] == {"height": 224, "width": 224}
    assert config["do_center_crop"] and config["resample"] == 2  # PIL bilinear
    assert config["image_mean"] == [0.485, 0.456, 0.406] and config["image_std"] == [0.229, 0.224, 0.225]
    from PIL import Image
    from transformers import AutoImageProcessor

    image = Image.new("RGB", (320, 256), (124, 116, 104))  # the ImageNet mean colour -> about 0
    pixels = AutoImageProcessor.from_pretrained(tmp_path / "converted")(image, return_tensors="pt")["pixel_values"]
    assert pixels.shape == (1, 3, 224, 224) and pixels.abs().max() < 0.02


@pytest.mark.filterwarnings("ignore:convert_checkpoint. no tokenizer")
def test_the_scan_warns_when_the_stated_targets_are_not_topographic(tmp_path):
    save_nanogpt(NanoGPT(vocab_size=96), tmp_path / "tau_1.0.pt")  # c_fc untrained: as random as its neighbours
    with pytest.warns(UserWarning, match="the layer scan disagrees with the targets \\['c_fc'\\]"):
        result = convert_checkpoint(tmp_path / "tau_1.0.pt", tmp_path / "converted", tokenizer=None)
    assert result.disagreement
    assert json.loads((tmp_path / "converted" / "config.json").read_text())[SOURCE_KEY]["scan_agrees"] is False


@pytest.mark.filterwarnings("ignore:convert_checkpoint. no tokenizer")
def test_targets_and_tau_given_explicitly(tmp_path):
    save_nanogpt(topographic_nanogpt(vocab_size=96), tmp_path / "nanogpt.pt")
    with pytest.raises(ValueError, match="tau is not in the file name 'nanogpt.pt'"):
        convert_checkpoint(tmp_path / "nanogpt.pt", tmp_path / "a")
    with pytest.warns(UserWarning, match="scan disagrees"):  # c_attn is not where the topography is
        result = convert_checkpoint(tmp_path / "nanogpt.pt", tmp_path / "b", tau=2.5, targets=["c_attn"])
    topo = TopoConfig.from_pretrained(tmp_path / "b")
    assert topo.tau == 2.5 and list(topo.sheets) == ["transformer.h.0.attn.c_attn", "transformer.h.1.attn.c_attn"]
    assert result.sheets == topo.sheets


class NotAllowed:
    def __reduce__(self):
        return (print, ("unpickling ran code",))


def _nanogpt_dict(edit):
    def save(path):
        model = topographic_nanogpt(vocab_size=96)
        save_nanogpt(model, path)
        checkpoint = torch.load(path, weights_only=True)
        edit(checkpoint)
        torch.save(checkpoint, path)
    return save


def _state_dict(make, edit):
    def save(path):
        state = make().state_dict()
        edit(state)
        torch.save(state, path)
    return save


def _vit(edit):
    def save(path):
        save_vit(topographic_vit(), path)
        checkpoint = torch.load(path, weights_only=False)  # our own file
        edit(checkpoint["model"])
        torch.save(checkpoint, path)
    return save


def _wrong_blur(state):
    state["layer2.0.conv1.blur_filter"] *= 2


def _blur_a_stride_1_conv(state):
    state["layer1.0.conv1.conv.weight"] = state.pop("layer1.0.conv1.weight")
    state["layer1.0.conv1.blur_filter"] = state["layer2.0.conv1.blur_filter"].clone()


def _non_square_grid(state):
    state["encoder.pos_embedding"] = state["encoder.pos_embedding"][:, :-1]


REFUSALS = {
    "unknown format": (lambda p: torch.save({"encoder.weight": torch.zeros(3, 3)}, p), {}, "unknown format"),
    "unrestricted unpickling": (lambda p: torch.save({"fc.weight": torch.zeros(2), "x": NotAllowed()}, p), {},
                                "needs unrestricted unpickling"),
    "format name": (_nanogpt_dict(lambda c: None), {"format": "gpt"}, "format must be one of"),
    "format that does not fit": (_nanogpt_dict(lambda c: None), {"format": "vit"}, "is missing keys"),
    "missing key": (_nanogpt_dict(lambda c: c["model"].pop("_orig_mod.transformer.h.1.mlp.c_proj.weight")), {},
                    "nanogpt checkpoint is missing keys transformer.h.1.mlp.c_proj.weight"),
    "untied head": (_nanogpt_dict(lambda c: c["model"].update({"_orig_mod.lm_head.weight": torch.zeros(96, 32)})), {},
                    "lm_head.weight differs from transformer.wte.weight"),
    "model_args against shapes": (_nanogpt_dict(lambda c: c["model_args"].update(n_layer=3)), {},
                                  "disagree with the weights' shapes"),
    "unknown nanoGPT variant": (_nanogpt_dict(lambda c: c["model_args"].update(use_rmsnorm=True)), {},
                                "keys \\['use_rmsnorm'\\]"),
    "heads for a resnet": (_state_dict(topographic_resnet, lambda s: None), {"num_heads": 4}, "a resnet has no heads"),
    "tokenizer for a vit": (_vit(lambda s: None), {"tokenizer": "openai-community/gpt2"}, "tokenizer is for nanogpt"),
    "extra ViT key": (_vit(lambda s: s.update({"heads.pre_logits.weight": torch.zeros(48, 48)})), {},
                      "keys that fit no known vit layout: heads.pre_logits.weight"),
    "ViT grid": (_vit(_non_square_grid), {}, "fit no layout"),
    "ViT heads": (_vit(lambda s: None), {"num_heads": 5}, "width 48 with 5 heads fit no layout"),
    "blur filter": (_state_dict(topographic_resnet, _wrong_blur), {}, "is not FFCV's fixed"),
    "blur placement": (_state_dict(topographic_resnet, _blur_a_stride_1_conv), {}, "FFCV's BlurPool rule"),
    "resnet shapes": (_state_dict(topographic_resnet, lambda s: s.update({"fc.weight": torch.zeros(10, 7)})), {},
                      r"classifier.1.weight has shape \(10, 7\) but BlurPoolResNetForImageClassification needs \(10, 64\)"),
}


@pytest.mark.filterwarnings("ignore:convert_checkpoint")
@pytest.mark.parametrize("case", REFUSALS)
def test_refusals_leave_nothing_behind(tmp_path, capsys, case):
    save, kwargs, match = REFUSALS[case]
    (tmp_path / "src").mkdir()
    save(tmp_path / "src" / "tau_1.0.pt")
    with pytest.raises(ValueError, match=match):
        convert_checkpoint(tmp_path / "src" / "tau_1.0.pt", tmp_path / "out" / "model", **kwargs)
    assert not (tmp_path / "out").exists() or not os.listdir(tmp_path / "out")
    assert "unpickling ran code" not in capsys.readouterr().out


def test_a_failure_while_writing_leaves_nothing_behind(tmp_path, monkeypatch):
    import hf_toponets.hub.folder as cards

    save_resnet(topographic_resnet(), tmp_path / "tau_1.0.pt")
    monkeypatch.setattr(cards, "write_model_card", lambda folder: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(OSError, match="disk full"):
        convert_checkpoint(tmp_path / "tau_1.0.pt", tmp_path / "out" / "model")
    assert os.listdir(tmp_path / "out") == []  # neither the folder nor its temporary twin


def test_refuses_a_non_empty_output_dir(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("mine")
    with pytest.raises(ValueError, match="exists and is not an empty folder"):
        convert_checkpoint(tmp_path / "tau_1.0.pt", tmp_path / "out")
    assert os.listdir(tmp_path / "out") == ["keep.txt"]


def test_push_publishes_a_converted_blurpool_resnet_with_its_code_and_processor(online, tmp_path):
    from conftest import ALICE
    from hf_toponets.hub.push import push_folder
    from huggingface_hub import ModelCard

    source = topographic_resnet()
    save_resnet(source, tmp_path / "all_topo_tau_5.0.pt")
    convert_quietly(tmp_path / "all_topo_tau_5.0.pt", tmp_path / "converted")
    result = push_folder(tmp_path / "converted", "alice/topo-resnet18", token=ALICE)
    assert {"blurpool_resnet.py", "preprocessor_config.json", "model.safetensors", "config.json", "README.md"} <= set(
        result.files)
    model = AutoModelForImageClassification.from_pretrained("alice/topo-resnet18").eval()
    images = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model(images).logits, source(images), rtol=0, atol=1e-4)
    card = ModelCard.load("alice/topo-resnet18")
    assert card.data.pipeline_tag == "image-classification"
    assert "## Source / conversion" in card.text and "all_topo_tau_5.0.pt" in card.text
