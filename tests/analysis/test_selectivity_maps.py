"""hf_toponets.analysis.selectivity_maps: eq. 2 t-values against a naive per-unit Welch loop, Moran's I
against a naive pair loop, the written maps against a second forward path, smoother maps with tau."""

import json
import math
import statistics

import pytest
import torch
from conftest import tiny_resnet, tiny_vit

from hf_toponets.analysis.activations import collect_responses
from hf_toponets.analysis.selectivity_maps import category_t_values, moran_i, selectivity_maps
from hf_toponets.core.config import TopoConfig
from hf_toponets.core.metadata import attach_topo_config
from hf_toponets.evaluation.image_folder import image_batches, read_image_folder


def welch_t(a: list[float], b: list[float]) -> float:
    """Welch's t by hand, one unit at a time (statistics.variance divides by n - 1)."""
    return (statistics.fmean(a) - statistics.fmean(b)) / math.sqrt(statistics.variance(a) / len(a) + statistics.variance(b) / len(b))


@pytest.mark.parametrize("counts", [[5, 7], [3, 4, 9], [2, 2, 2, 30]])
def test_t_values_match_a_naive_welch_loop(counts):
    g = torch.Generator().manual_seed(len(counts))
    responses = torch.randn(sum(counts), 6, generator=g, dtype=torch.float64) + torch.arange(sum(counts))[:, None] % 3
    t = category_t_values(responses, counts)
    assert t.shape == (len(counts), 6)
    start = 0
    for c, n in enumerate(counts):
        rows = list(range(start, start + n))
        for u in range(6):
            inside = [float(responses[r, u]) for r in rows]
            outside = [float(responses[r, u]) for r in range(sum(counts)) if r not in rows]
            assert float(t[c, u]) == pytest.approx(welch_t(inside, outside), rel=1e-5)
        start += n


def naive_moran(grid: list[list[float]]) -> float:
    """Moran's I with an explicit rook weight w_ij over every ordered pair of cells."""
    h, w = len(grid), len(grid[0])
    cells = [(r, c) for r in range(h) for c in range(w) if math.isfinite(grid[r][c])]
    mean = statistics.fmean(grid[r][c] for r, c in cells)
    num = total_w = 0.0
    for r1, c1 in cells:
        for r2, c2 in cells:
            if abs(r1 - r2) + abs(c1 - c2) == 1:
                num += (grid[r1][c1] - mean) * (grid[r2][c2] - mean)
                total_w += 1
    den = sum((grid[r][c] - mean) ** 2 for r, c in cells)
    return len(cells) / total_w * num / den


@pytest.mark.parametrize("shape, with_nan", [((5, 7), False), ((6, 6), True), ((1, 9), False)])
def test_moran_i_matches_a_naive_pair_loop(shape, with_nan):
    grid = torch.randn(shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    grid += torch.linspace(0, 2, shape[1], dtype=torch.float64)  # some structure
    if with_nan:
        grid[0, 0] = grid[3, 2] = float("nan")
    assert moran_i(grid) == pytest.approx(naive_moran(grid.tolist()), rel=1e-9)


def test_moran_i_orders_smooth_shuffled_and_checkerboard():
    rows, cols = torch.meshgrid(torch.arange(16.0), torch.arange(16.0), indexing="ij")
    smooth = torch.sin(rows / 5) + torch.cos(cols / 5)
    shuffled = smooth.flatten()[torch.randperm(256, generator=torch.Generator().manual_seed(0))].reshape(16, 16)
    checker = (rows + cols) % 2 * 2 - 1
    assert moran_i(smooth) > 0.9
    assert abs(moran_i(shuffled)) < 0.15
    assert moran_i(checker) == pytest.approx(-1.0)
    assert math.isnan(moran_i(torch.ones(4, 4))) and math.isnan(moran_i(torch.full((3, 3), float("nan"))))


def responses_by_hand(model, module_names, categories, processor):
    """Second path: forward hooks that average each output over space (Conv2d) or tokens (Linear)."""
    out = {n: [] for n in module_names}
    handles = []
    for name in module_names:
        module = model.get_submodule(name)
        dims = (2, 3) if isinstance(module, torch.nn.Conv2d) else (1,)
        handles.append(module.register_forward_hook(lambda m, a, o, n=name, d=dims: out[n].append(o.mean(dim=d))))
    model.eval()
    with torch.no_grad():
        for pixels in image_batches([p for ps in categories.values() for p in ps], processor, 7):
            model(pixels)
    for handle in handles:
        handle.remove()
    return {n: torch.cat(v) for n, v in out.items()}


@pytest.mark.parametrize("build, targets", [(tiny_resnet, r".*stages\.1\.layers\.\d+\.(layer\.\d+|shortcut)\.convolution"),
                                            (tiny_vit, ["fc2"])])
def test_written_maps_match_a_second_path(tmp_path, digits_folder, build, targets):
    from transformers import ConvNextImageProcessorPil

    model = build(seed=0)
    topo = attach_topo_config(model, TopoConfig(target_modules=targets))
    processor = ConvNextImageProcessorPil(size={"shortest_edge": 32}, crop_pct=1.0)
    categories = {k: v[:5] for k, v in read_image_folder(digits_folder).items() if k in "017"}
    result = selectivity_maps(model, categories, processor, tmp_path, batch_size=4, progress=False)
    assert json.loads((tmp_path / "selectivity.json").read_text()) == result
    assert result["categories"] == {"0": 5, "1": 5, "7": 5}
    assert list(result["layers"]) == list(topo.sheets)
    expected = responses_by_hand(model, list(topo.sheets), categories, processor)
    for name, entry in result["layers"].items():
        h, w, _ = entry["sheet"] = topo.sheets[name]
        t = category_t_values(expected[name].double(), [5, 5, 5]).reshape(3, h, w)
        for i, c in enumerate(categories):
            assert torch.tensor(entry["t"][c], dtype=torch.float64) == pytest.approx(t[i], abs=1e-4, rel=1e-4)
            assert entry["smoothness"][c] == pytest.approx(moran_i(t[i]), abs=1e-4)
        assert (tmp_path / entry["map"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_needs_two_images_per_category(tmp_path, digits_folder):
    from transformers import ConvNextImageProcessorPil

    model = tiny_vit()
    attach_topo_config(model, TopoConfig(target_modules=["fc2"]))
    categories = {k: v[:1] if k == "3" else v[:4] for k, v in read_image_folder(digits_folder).items()}
    with pytest.raises(ValueError, match=r"selectivity_maps: need >= 2 categories of >= 2 images each.*\['3'\]"):
        selectivity_maps(model, categories, ConvNextImageProcessorPil(), tmp_path, progress=False)


@pytest.mark.slow
def test_maps_get_smoother_with_tau(tmp_path, digits_folder):
    """Same init, same digits, same steps: the TopoNet's t-maps (one category per digit) are smoother than tau = 0's."""
    from transformers import ConvNextImageProcessorPil, TrainingArguments

    from hf_toponets import TopoTrainer
    from hf_toponets.training.images import collate_images, embedded_digits, image_transform

    processor = ConvNextImageProcessorPil(size={"shortest_edge": 32}, crop_pct=1.0)
    train = embedded_digits(32).select(range(400, 1040)).with_transform(image_transform(processor))
    categories = read_image_folder(digits_folder)
    smoothness = {}
    for tau in (0.0, 20.0):
        model = tiny_resnet(seed=0, hidden_sizes=(64, 128))
        args = TrainingArguments(str(tmp_path / f"tau{tau}"), max_steps=10, per_device_train_batch_size=16, learning_rate=0.05,
                                 lr_scheduler_type="constant", report_to=[], save_strategy="no", use_cpu=True,
                                 disable_tqdm=True, seed=0, remove_unused_columns=False, logging_steps=10)
        trainer = TopoTrainer(model=model, args=args, train_dataset=train, data_collator=collate_images,
                              topo_config=TopoConfig(target_modules=["convolution"], exclude_modules=["embedder.convolution"], tau=tau))
        trainer.train()
        # the maps' numbers without their PNGs (drawing 60 panels would dominate the test)
        modules = {name: model.get_submodule(name) for name in trainer.topo_config.sheets}
        paths = [p for ps in categories.values() for p in ps]
        responses = collect_responses(model, modules, image_batches(paths, processor, 64))
        values = [moran_i(t.reshape(h, w)) for name, (h, w, _) in trainer.topo_config.sheets.items()
                  for t in category_t_values(responses[name], [len(p) for p in categories.values()])]
        assert len(values) == 6 * 10  # 6 conv sheets (8 x 8, 8 x 16; shortcuts included) x 10 digits
        smoothness[tau] = statistics.fmean(values)
    # measured: about -0.02 for tau = 0 (a shuffled map's level) and 0.31 for tau = 20
    assert smoothness[0.0] < 0.1 and smoothness[20.0] > smoothness[0.0] + 0.2, smoothness
