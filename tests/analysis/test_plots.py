import os
import struct

import numpy as np
import pytest
import torch

from hf_toponets.analysis.plots import ScatterPanel, plot_correlation_curves, plot_scatter, plot_sheet_maps, plot_sweep

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_size(path) -> tuple[int, int]:
    """Width and height from the IHDR chunk, after checking the signature."""
    with open(path, "rb") as f:
        head = f.read(24)
    assert head[:8] == PNG_SIGNATURE and head[12:16] == b"IHDR"
    return struct.unpack(">II", head[16:24])


def leftovers(folder):
    return [n for n in os.listdir(folder) if n.endswith(".tmp")]


@pytest.mark.parametrize("maps", [
    {"PC1": np.random.default_rng(0).normal(size=(6, 8))},
    {"flat (n,)": torch.randn(48), "with nan": np.where(np.eye(4, 12) > 0, np.nan, 1.0), "list": [[1, 2], [3, 4]]},
])
def test_sheet_maps_write_a_valid_png(tmp_path, maps):
    path = tmp_path / "maps" / "layer.png"  # the folder is created
    plot_sheet_maps(maps, path, label="t")
    w, h = png_size(path)
    assert w > 200 and h > 200 and os.path.getsize(path) > 2000
    assert leftovers(path.parent) == []


def test_more_panels_make_a_larger_picture(tmp_path):
    one, six = tmp_path / "one.png", tmp_path / "six.png"
    plot_sheet_maps({"a": np.ones((4, 4))}, one)
    plot_sheet_maps({str(i): np.random.default_rng(i).normal(size=(4, 4)) for i in range(6)}, six, ncols=3)
    assert png_size(six)[0] > png_size(one)[0] and png_size(six)[1] > png_size(one)[1]


def test_curves_and_sweeps_write_valid_pngs(tmp_path):
    curves = {"h.0 weights": ([1, 2, 3], [0.5, np.nan, 0.1]), "h.0 activations": (np.arange(3.0), torch.tensor([0.9, 0.4, 0.0]))}
    plot_correlation_curves(curves, tmp_path / "curves.png")
    plot_sweep({"change in perplexity": {"tau=0": ([0, 0.5], [0, 3.0]), "tau=10": ([0, 0.5], [0, 1.0])}}, tmp_path / "sweep.png")
    for name in ("curves.png", "sweep.png"):
        w, h = png_size(tmp_path / name)
        assert w > 300 and h > 200
    assert leftovers(tmp_path) == []


def test_an_existing_file_is_replaced_whole(tmp_path):
    path = tmp_path / "m.png"
    path.write_bytes(b"old")
    plot_sheet_maps({"a": np.ones((3, 3))}, path)
    assert png_size(path)[0] > 0


def test_bad_input(tmp_path):
    with pytest.raises(ValueError, match="maps is empty"):
        plot_sheet_maps({}, tmp_path / "x.png")
    with pytest.raises(ValueError, match=r"bad: a sheet map must be \(n_units,\) or \(h, w\)"):
        plot_sheet_maps({"bad": np.zeros((2, 2, 2))}, tmp_path / "x.png")
    with pytest.raises(ValueError, match="curves is empty"):
        plot_correlation_curves({}, tmp_path / "x.png")
    with pytest.raises(ValueError, match="3 x values but 2 y values"):
        plot_sweep({"y": {"a": ([0, 1, 2], [0, 1])}}, tmp_path / "x.png")
    with pytest.raises(ValueError, match="panels is empty"):
        plot_sweep({"y": {}}, tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists() and leftovers(tmp_path) == []


def test_selectivity_map_end_to_end(tmp_path):
    """Two categories of stimuli -> per-unit responses (hooks) -> t-values (eq. 2) -> a map on the sheet."""
    from conftest import tiny_gpt_neo
    from hf_toponets.analysis.activations import collect_responses
    from hf_toponets.analysis.selectivity import selectivity

    model = tiny_gpt_neo(seed=0)
    name = "transformer.h.1.mlp.c_fc"
    gen = torch.Generator().manual_seed(0)
    low, high = torch.randint(0, 64, (12, 10), generator=gen), torch.randint(64, 128, (12, 10), generator=gen)
    responses = {k: collect_responses(model, {name: model.get_submodule(name)}, [ids])[name] for k, ids in
                 (("low", low), ("high", high))}
    t = selectivity(responses["high"], responses["low"])
    assert t.shape == (128,) and t.isfinite().all() and t.abs().max() > 2  # distinct token sets: some units care
    plot_sheet_maps({"high-id tokens vs low-id tokens": t}, tmp_path / "selectivity.png", label="t")
    assert png_size(tmp_path / "selectivity.png")[0] > 200


def test_scatter_panels_write_a_valid_png(tmp_path):
    panels = [ScatterPanel([0.1, 0.2, 0.4], [30.0, 31.0, 35.0], ["tau=0", "tau=5", "tau=50"], "smoothness", "perplexity",
                           "r = +0.99", ["black", "tab:red", "tab:blue"]),
              ScatterPanel([1.0, 1.0], [2.0, 3.0], ["a", "b"], "x (constant: no trend line)", "y")]
    plot_scatter(panels, tmp_path / "scatter.png", ncols=2)
    plot_scatter(panels, tmp_path / "palette.png", ncols=2, palette=True)
    width, height = png_size(tmp_path / "scatter.png")
    assert width > height > 0 and png_size(tmp_path / "palette.png") == (width, height) and not leftovers(tmp_path)
    from PIL import Image

    with Image.open(tmp_path / "palette.png") as small, Image.open(tmp_path / "scatter.png") as full:
        assert small.mode == "P" and (tmp_path / "palette.png").stat().st_size < (tmp_path / "scatter.png").stat().st_size
        # the palette keeps the plot: every pixel within a few levels of the full-colour one
        diff = np.abs(np.asarray(small.convert("RGB"), dtype=int) - np.asarray(full.convert("RGB"), dtype=int))
        assert np.percentile(diff, 99) <= 8
    with pytest.raises(ValueError, match="plot_scatter: y vs x: 2 x, 2 y, 1 labels"):
        plot_scatter([ScatterPanel([1, 2], [3, 4], ["a"], "x", "y")], tmp_path / "bad.png")
    with pytest.raises(ValueError, match="panels is empty"):
        plot_scatter([], tmp_path / "bad.png")
