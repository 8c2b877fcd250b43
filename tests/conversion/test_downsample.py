"""downsample_model: sheet resampling against F.interpolate, exact counts, shrink == reconstruct
(nearest), GPT-2 Conv1D orientation, round trips, the smooth-vs-shuffled property, bad input."""

import math

import pytest
import torch
import torch.nn.functional as F
from conftest import tiny_gpt2, tiny_gpt_neo
from torch import nn

from hf_toponets.core.config import TopoConfig
from hf_toponets.conversion.downsample import count_parameters, downsample_model, downsampled_shape, resample_sheet
from hf_toponets.core.metadata import attach_topo_config, read_topo_config
from hf_toponets.core.sheet import sheet_shape, unit_weight

BUILDERS = {"gpt_neo": tiny_gpt_neo, "gpt2": tiny_gpt2}
IDS = torch.randint(0, 128, (3, 12), generator=torch.Generator().manual_seed(0))


def logits(model, ids=IDS):
    with torch.no_grad():
        return model.eval()(ids).logits


def interpolate_sheet(sheet, size, interpolation):
    """Oracle: the paper's operation, F.interpolate on a (h, w, d) sheet -> (h', w', d)."""
    return F.interpolate(sheet.permute(2, 0, 1)[None], size=size, mode=interpolation)[0].permute(1, 2, 0)


def smooth_sheets(model, seed=1, fmax=0.5):
    """Give every c_fc a smooth sheet: weights and bias are sums of 3 cosines of < fmax cycles per sheet."""
    g = torch.Generator().manual_seed(seed)
    for block in model.transformer.h:
        fc = block.mlp.c_fc
        n, d = unit_weight(fc).shape
        h, w = sheet_shape(n)
        r, c = torch.arange(h).float()[:, None, None] / h, torch.arange(w).float()[None, :, None] / w
        weight, bias = torch.zeros(h, w, d), torch.zeros(h, w)
        for _ in range(3):
            fr, fw = torch.rand(2, generator=g) * fmax
            phase = torch.rand(d, generator=g) * 2 * math.pi
            wave = torch.cos(2 * math.pi * (fr * r + fw * c) + phase)  # (h, w, d)
            weight += torch.randn(d, generator=g) / math.sqrt(d) * wave
            bias += 0.3 * torch.randn((), generator=g) * wave[..., 0]
        with torch.no_grad():
            unit_weight(fc).copy_(weight.reshape(n, d))
            fc.bias.copy_(bias.reshape(n))
    return model


def shuffle_units(model, seed=2):
    """Permute each c_fc's units (rows + bias) and the matching c_proj columns: same function, no map."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for block in model.transformer.h:
            fc, proj = block.mlp.c_fc, block.mlp.c_proj
            perm = torch.randperm(fc.bias.shape[0], generator=g)
            unit_weight(fc).copy_(unit_weight(fc)[perm].clone())
            fc.bias.copy_(fc.bias[perm].clone())
            unit_weight(proj).copy_(unit_weight(proj)[:, perm].clone())
    return model


@pytest.mark.parametrize(
    "h, w, keep, expected",
    [(48, 64, 1.0, (48, 64)), (48, 64, 0.2, (22, 28)), (48, 64, 0.1, (15, 20)), (48, 64, 0.8, (43, 57)),
     (8, 16, 0.25, (4, 8)), (8, 16, 0.5, (6, 11)), (1, 13, 0.4, (1, 7)), (3, 4, 0.1, (1, 1))],
)
def test_downsampled_shape_table(h, w, keep, expected):
    assert downsampled_shape(h, w, keep) == expected


@pytest.mark.parametrize("h, w", [(48, 64), (8, 16), (12, 12), (5, 7), (2, 50)])
@pytest.mark.parametrize("keep", [0.9, 0.5, 0.3, 0.2, 0.1])
def test_downsampled_shape_is_a_canonical_sheet_near_the_target(h, w, keep):
    a, b = downsampled_shape(h, w, keep)
    assert sheet_shape(a * b) == (a, b)  # the library lays the small layer out exactly as it was built
    # no canonical sheet in the floor/ceil window does better (brute-force oracle over that window)
    s = math.sqrt(keep)
    window = [(x, y) for x in (math.floor(h * s), math.ceil(h * s)) for y in (math.floor(w * s), math.ceil(w * s))
              if 1 <= x <= h and 1 <= y <= w and sheet_shape(x * y) == (x, y)]
    if window:
        assert abs(a * b - keep * h * w) == min(abs(x * y - keep * h * w) for x, y in window)


@pytest.mark.parametrize("interpolation", ["bilinear", "nearest"])
@pytest.mark.parametrize("h, w, h2, w2", [(8, 16, 4, 8), (48, 64, 22, 28), (6, 11, 6, 11), (5, 7, 2, 3), (4, 6, 9, 13)])
def test_resample_sheet_equals_f_interpolate_on_the_sheet(h, w, h2, w2, interpolation):
    sheet = torch.randn(h, w, 5, dtype=torch.float64)
    torch.testing.assert_close(resample_sheet(sheet, (h2, w2), interpolation), interpolate_sheet(sheet, (h2, w2), interpolation))


def test_gpt_neo_125m_counts_and_config_exact():
    from transformers import GPTNeoConfig, GPTNeoForCausalLM

    torch.manual_seed(0)
    config = GPTNeoConfig(hidden_size=768, num_layers=12, num_heads=12, attention_types=[[["global", "local"], 6]])
    model = GPTNeoForCausalLM(config)
    attach_topo_config(model, TopoConfig(target_modules=["c_fc"], tau=5.0))
    # by hand: wte 50257*768, wpe 2048*768, ln_f 2*768; per block 2 LNs, q/k/v 3*768^2 (no bias),
    # out_proj 768^2+768, c_fc 768*3072+3072, c_proj 3072*768+768
    block = 2 * 1536 + 3 * 768 * 768 + 768 * 768 + 768 + (768 * 3072 + 3072) + (3072 * 768 + 768)
    total = 50257 * 768 + 2048 * 768 + 1536 + 12 * block
    assert count_parameters(model) == {"total": total, "mlp": 12 * (768 * 3072 + 3072 + 3072 * 768 + 768)}
    assert total == 125_198_592
    small = downsample_model(model, keep=0.2, mode="shrink")
    n = 22 * 28  # 616 units, 20.05% of 3072
    assert small.config.intermediate_size == n
    assert small.config.hidden_size == 768 and small.config.num_layers == 12
    mlp = 12 * (768 * n + n + n * 768 + 768)
    assert count_parameters(small) == {"total": total - 12 * (3072 - n) * (768 + 1 + 768), "mlp": mlp}
    assert count_parameters(small)["total"] == 79_900_128
    topo = read_topo_config(small)  # checked against the new weights
    assert topo.tau == 5.0 and topo.sheets == {f"transformer.h.{i}.mlp.c_fc": [22, 28, 768] for i in range(12)}
    assert small.config.topo_downsample == {
        "source": None, "keep": 0.2, "mode": "shrink", "interpolation": "bilinear",
        "source_sheet": [48, 64], "sheet": [22, 28], "kept_fraction": n / 3072,
    }
    assert type(small) is GPTNeoForCausalLM


@pytest.mark.parametrize("arch", ["gpt_neo", "gpt2"])
@pytest.mark.parametrize("keep", [0.5, 0.25, 0.1])
def test_nearest_shrink_equals_nearest_reconstruct(arch, keep):
    model = BUILDERS[arch](seed=3)
    shrunk = downsample_model(model, keep, "shrink", "nearest", targets=["c_fc"])
    rebuilt = downsample_model(model, keep, "reconstruct", "nearest", targets=["c_fc"])
    assert count_parameters(shrunk)["total"] < count_parameters(rebuilt)["total"] == count_parameters(model)["total"]
    plain = {k: v for k, v in rebuilt.config.to_dict().items() if k not in ("topo", "topo_downsample")}
    assert plain == model.config.to_dict()  # reconstruct keeps the architecture, config and all
    torch.testing.assert_close(logits(shrunk), logits(rebuilt), atol=1e-5, rtol=0)
    assert (logits(rebuilt) - logits(model)).abs().max() > 1e-2  # the comparison is not vacuous


@pytest.mark.parametrize("arch", ["gpt_neo", "gpt2"])
@pytest.mark.parametrize("mode", ["shrink", "reconstruct"])
@pytest.mark.parametrize("interpolation", ["bilinear", "nearest"])
def test_keep_one_is_the_identity(arch, mode, interpolation):
    model = BUILDERS[arch](seed=4)
    same = downsample_model(model, 1.0, mode, interpolation, targets=["c_fc"])
    torch.testing.assert_close(logits(same), logits(model), atol=1e-5, rtol=0)


@pytest.mark.parametrize("arch", ["gpt_neo", "gpt2"])
@pytest.mark.parametrize("interpolation", ["bilinear", "nearest"])
def test_weights_match_the_interpolate_oracle_in_stored_orientation(arch, interpolation):
    """c_fc via F.interpolate on the sheet; c_proj' a = P upsample(a) for any small activation a."""
    model = BUILDERS[arch](seed=5)
    conv1d = arch == "gpt2"  # Conv1D stores (in, out)
    fc, proj = model.transformer.h[1].mlp.c_fc, model.transformer.h[1].mlp.c_proj
    w_fc = fc.weight.detach().t() if conv1d else fc.weight.detach()  # (128 units, 32)
    p = proj.weight.detach().t() if conv1d else proj.weight.detach()  # (32, 128 units)
    sheet = torch.cat([w_fc, fc.bias.detach()[:, None]], 1).reshape(8, 16, 33)
    small_sheet = interpolate_sheet(sheet, (6, 11), interpolation)  # keep 0.5: 66 units
    shrunk = downsample_model(model, 0.5, "shrink", interpolation, targets=["c_fc"])
    new_fc, new_proj = shrunk.transformer.h[1].mlp.c_fc, shrunk.transformer.h[1].mlp.c_proj
    assert new_fc.weight.shape == ((32, 66) if conv1d else (66, 32))
    assert new_proj.weight.shape == ((66, 32) if conv1d else (32, 66))
    got_fc = new_fc.weight.t() if conv1d else new_fc.weight
    torch.testing.assert_close(got_fc, small_sheet[..., :32].reshape(66, 32))
    torch.testing.assert_close(new_fc.bias, small_sheet[..., 32].reshape(66))
    a = torch.randn(66, 7)  # 7 activation vectors of the 6 x 11 small sheet
    up_a = interpolate_sheet(a.reshape(6, 11, 7), (8, 16), interpolation).reshape(128, 7)
    got_proj = new_proj.weight.t() if conv1d else new_proj.weight  # (32 out, 66 small units)
    torch.testing.assert_close(got_proj @ a, p @ up_a, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(new_proj.bias, proj.bias)
    rebuilt = downsample_model(model, 0.5, "reconstruct", interpolation, targets=["c_fc"]).transformer.h[1].mlp.c_fc
    assert rebuilt.weight.shape == fc.weight.shape
    back = interpolate_sheet(small_sheet, (8, 16), interpolation).reshape(128, 33)
    torch.testing.assert_close(rebuilt.weight.t() if conv1d else rebuilt.weight, back[:, :32])
    torch.testing.assert_close(rebuilt.bias, back[:, 32])


@pytest.mark.parametrize("arch", ["gpt_neo", "gpt2"])
@pytest.mark.parametrize("keep", [0.5, 0.25])
def test_bilinear_shrink_stays_close_to_reconstruct(arch, keep):
    # random sheets: measured |shrink - reconstruct| = 0.02-0.04 |reconstruct - source|
    model = BUILDERS[arch](seed=6)
    src = logits(model)
    shrunk = logits(downsample_model(model, keep, "shrink", "bilinear", targets=["c_fc"]))
    rebuilt = logits(downsample_model(model, keep, "reconstruct", "bilinear", targets=["c_fc"]))
    assert (shrunk - rebuilt).norm() < 0.1 * (rebuilt - src).norm()
    # smooth sheets: the loss of shrink is measured 1.1-1.3x that of reconstruct
    smooth = smooth_sheets(BUILDERS[arch](seed=6))
    src = logits(smooth)
    shrunk = logits(downsample_model(smooth, keep, "shrink", "bilinear", targets=["c_fc"]))
    rebuilt = logits(downsample_model(smooth, keep, "reconstruct", "bilinear", targets=["c_fc"]))
    assert (shrunk - src).norm() < 1.5 * (rebuilt - src).norm()


@pytest.mark.parametrize("arch", ["gpt_neo", "gpt2"])
@pytest.mark.parametrize("mode", ["shrink", "reconstruct"])
@pytest.mark.parametrize("keep", [0.5, 0.25])
def test_smooth_sheets_survive_downsampling_shuffled_ones_do_not(arch, mode, keep):
    smooth = smooth_sheets(BUILDERS[arch](seed=7))
    shuffled = shuffle_units(smooth_sheets(BUILDERS[arch](seed=7)))
    src = logits(smooth)
    torch.testing.assert_close(logits(shuffled), src, atol=1e-5, rtol=0)  # same function, no topography
    err = {name: (logits(downsample_model(m, keep, mode, "bilinear", targets=["c_fc"])) - src).norm()
           for name, m in (("smooth", smooth), ("shuffled", shuffled))}
    assert err["smooth"] < 0.25 * err["shuffled"]  # measured 0.04-0.16


@pytest.mark.parametrize("arch", ["gpt_neo", "gpt2"])
@pytest.mark.parametrize("mode", ["shrink", "reconstruct"])
def test_save_pretrained_round_trip_with_plain_auto_class(tmp_path, arch, mode):
    from transformers import AutoModelForCausalLM

    model = BUILDERS[arch](seed=8)
    attach_topo_config(model, TopoConfig(target_modules=["c_fc"], tau=2.0))
    small = downsample_model(model, 0.25, mode)  # targets from the topo entry
    small.save_pretrained(tmp_path)
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path)
    assert type(loaded) is type(small)
    torch.testing.assert_close(logits(loaded), logits(small), atol=0, rtol=0)
    assert read_topo_config(loaded) == read_topo_config(small)
    sheet = [4, 8, 32] if mode == "shrink" else [8, 16, 32]
    assert set(map(tuple, read_topo_config(loaded).sheets.values())) == {tuple(sheet)}
    assert loaded.config.topo_downsample == small.config.topo_downsample
    assert loaded.config.topo_downsample["mode"] == mode and loaded.config.topo_downsample["sheet"] == [4, 8]


def test_source_model_is_untouched_and_subset_reconstruct_works():
    model = tiny_gpt_neo(seed=9)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rebuilt = downsample_model(model, 0.25, "reconstruct", targets=["transformer.h.0.mlp.c_fc"])
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    after = rebuilt.state_dict()
    assert not torch.equal(after["transformer.h.0.mlp.c_fc.weight"], before["transformer.h.0.mlp.c_fc.weight"])
    assert torch.equal(after["transformer.h.1.mlp.c_fc.weight"], before["transformer.h.1.mlp.c_fc.weight"])


def _different_widths():
    model = tiny_gpt_neo(seed=10)
    model.transformer.h[1].mlp.c_fc = nn.Linear(32, 64)
    model.transformer.h[1].mlp.c_proj = nn.Linear(64, 32)
    return model


def _no_projection():
    model = tiny_gpt_neo(seed=10)
    model.transformer.h[0].mlp.c_proj = nn.Identity()
    return model


@pytest.mark.parametrize(
    "make, kwargs, match",
    [
        (tiny_gpt_neo, {"keep": 0.0, "targets": ["c_fc"]}, r"keep must be a fraction in \(0, 1\]"),
        (tiny_gpt_neo, {"keep": 1.5, "targets": ["c_fc"]}, r"keep must be a fraction in \(0, 1\]"),
        (tiny_gpt_neo, {"keep": -0.2, "targets": ["c_fc"]}, r"keep must be a fraction"),
        (tiny_gpt_neo, {"keep": True, "targets": ["c_fc"]}, r"keep must be a fraction"),
        (tiny_gpt_neo, {"keep": 0.2}, r"no 'topo' entry .* pass targets="),
        (_different_widths, {"keep": 0.5, "mode": "reconstruct", "targets": ["c_fc"]}, r"share one sheet shape.*h\.1\.mlp\.c_fc: \[8, 8, 32\]"),
        (_no_projection, {"keep": 0.5, "targets": ["c_fc"]}, r"cannot find the output projection of target transformer\.h\.0\.mlp\.c_fc"),
        (tiny_gpt_neo, {"keep": 0.5, "targets": ["q_proj"]}, r"cannot find the output projection .*q_proj"),
        (tiny_gpt_neo, {"keep": 0.003, "targets": ["c_fc"]}, r"keep=0.003 would shrink the 8 x 16 sheet .* use keep >= 0.003906"),
        (tiny_gpt_neo, {"keep": 0.5, "targets": ["transformer.h.0.mlp.c_fc"]}, r"mode='shrink' changes the MLP width of all 2 blocks"),
        (tiny_gpt_neo, {"keep": 0.5, "mode": "prune", "targets": ["c_fc"]}, r"mode must be one of"),
        (tiny_gpt_neo, {"keep": 0.5, "interpolation": "bicubic", "targets": ["c_fc"]}, r"interpolation must be one of"),
    ],
)
def test_bad_input_is_a_clear_value_error(make, kwargs, match):
    with pytest.raises(ValueError, match=match):
        downsample_model(make(), **kwargs)


def test_unknown_model_family_names_the_table():
    model = tiny_gpt_neo()
    model.config.model_type = "t5"  # an instance attribute shadows the class's
    with pytest.raises(ValueError, match=r"model_type 't5' .*downsample\.MLP_LAYOUTS"):
        downsample_model(model, 0.5, targets=["c_fc"])


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
def test_dtype_kept_and_embeddings_stay_tied(dtype):
    model = tiny_gpt2(seed=11).to(dtype)
    small = downsample_model(model, 0.25, targets=["c_fc"])
    assert {p.dtype for p in small.parameters()} == {dtype}
    assert small.lm_head.weight is small.transformer.wte.weight
    assert torch.equal(small.transformer.wte.weight, model.transformer.wte.weight)


def test_cli_downsample_saves_a_loadable_smaller_model_and_the_tokenizer(tmp_path, capsys, shared_data):
    from transformers import AutoModelForCausalLM, AutoTokenizer, GPT2TokenizerFast

    from hf_toponets.cli import main

    source = tmp_path / "source"
    model = tiny_gpt_neo(seed=12)
    attach_topo_config(model, TopoConfig(target_modules=["c_fc"]))
    model.save_pretrained(source)
    GPT2TokenizerFast.from_pretrained(shared_data / "gpt2-tokenizer").save_pretrained(source)
    out = tmp_path / "small"
    assert main(["downsample", "--model", str(source), "--keep", "0.25", "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    before, after = count_parameters(model), count_parameters(downsample_model(model, 0.25))
    assert [line.split()[2::2] for line in printed.splitlines()[1:3]] == [
        [f"{before[k]:,}", f"{after[k]:,}"] for k in ("total", "mlp")]
    assert "8 x 16 -> 4 x 8" in printed
    loaded = AutoModelForCausalLM.from_pretrained(out)
    assert loaded.config.intermediate_size == 32 and loaded.config.topo_downsample["source"] == str(source)
    assert AutoTokenizer.from_pretrained(out).vocab_size == 50257
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp folder left
    # an existing folder is refused, before anything is written
    assert main(["downsample", "--model", str(source), "--keep", "0.5", "--output", str(out)]) == 2
    assert "exists and is not an empty folder" in capsys.readouterr().err
    assert AutoModelForCausalLM.from_pretrained(out).config.intermediate_size == 32


def test_cli_downsample_bad_keep_is_one_line_error(tmp_path, capsys):
    from hf_toponets.cli import main

    tiny_gpt2(seed=13).save_pretrained(tmp_path / "plain")
    assert main(["downsample", "--model", str(tmp_path / "plain"), "--keep", "1.5", "--target-modules", "c_fc",
                 "--output", str(tmp_path / "out")]) == 2
    assert "keep must be a fraction in (0, 1]" in capsys.readouterr().err
    assert main(["downsample", "--model", str(tmp_path / "plain"), "--output", str(tmp_path / "out")]) == 2
    assert "no 'topo' entry" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
