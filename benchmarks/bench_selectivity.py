"""Selectivity maps (Fig. 5A) over 1,000 images on a ResNet-18-shaped model, stage by stage, one run.

Run: ``python benchmarks/bench_selectivity.py [--images 1000] [--categories 5] [--image 224] [--batch 50]``.
Writes ``--images`` random RGB PNGs (``--image`` pixels square, ``--categories`` folders) to a temporary
folder, then times :func:`hf_toponets.analysis.selectivity_maps.selectivity_maps` on a randomly initialised
ResNet-18 (1000 classes; its 19 residual-block Conv2d sheets topographic) with a ConvNext-style processor
(resize 256, centre crop 224), and beside it what the same images cost without us: reading + preprocessing
them alone, and a plain forward pass over the preprocessed batches. Prints each stage and the ratios.
"""

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from transformers import ConvNextImageProcessorPil, ResNetConfig, ResNetForImageClassification

from hf_toponets.analysis.selectivity_maps import category_t_values, moran_i, selectivity_maps
from hf_toponets.core.config import TopoConfig
from hf_toponets.core.metadata import attach_topo_config
from hf_toponets.evaluation.image_folder import image_batches, read_image_folder


def write_images(folder: Path, n: int, n_categories: int, size: int) -> None:
    rng = np.random.default_rng(0)
    for i in range(n):
        sub = folder / f"category{i % n_categories}"
        sub.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (size + 32, size + 32, 3), dtype=np.uint8)).save(sub / f"{i:05d}.png")


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--categories", type=int, default=5)
    parser.add_argument("--image", type=int, default=224)
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's); 1 gives stable medians on a busy machine")
    a = parser.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    folder = Path(tempfile.mkdtemp())
    write_images(folder, a.images, a.categories, a.image)
    torch.manual_seed(0)
    model = ResNetForImageClassification(ResNetConfig(layer_type="basic", depths=[2, 2, 2, 2], hidden_sizes=[64, 128, 256, 512],
                                                      embedding_size=64, num_labels=1000)).eval()
    topo = attach_topo_config(model, TopoConfig(target_modules=["convolution"], exclude_modules=["embedder.convolution"]))
    processor = ConvNextImageProcessorPil(size={"shortest_edge": a.image})
    categories = read_image_folder(folder)
    paths = [p for ps in categories.values() for p in ps]

    start = time.perf_counter()
    batches = list(image_batches(paths, processor, a.batch))
    read = time.perf_counter() - start
    start = time.perf_counter()
    with torch.no_grad():
        for pixels in batches:
            model(pixels)
    forward = time.perf_counter() - start
    start = time.perf_counter()
    result = selectivity_maps(model, categories, processor, folder / "out", batch_size=a.batch, progress=False)
    total = time.perf_counter() - start
    responses = {n: torch.randn(a.images, h * w) for n, (h, w, _) in topo.sheets.items()}  # the statistics alone
    counts = [len(p) for p in categories.values()]
    start = time.perf_counter()
    for name, (h, w, _) in topo.sheets.items():
        for t in category_t_values(responses[name], counts):
            moran_i(t.reshape(h, w))
    stats = time.perf_counter() - start
    n_maps = sum(len(e["smoothness"]) for e in result["layers"].values())
    print(f"ResNet-18 (random init), {a.images} images of {a.image}^2 in {a.categories} categories, batch {a.batch}, "
          f"CPU, {torch.get_num_threads()} threads, {len(topo.sheets)} layers -> {n_maps} t-maps")
    print(f"read + preprocess alone     {read:8.2f} s")
    print(f"plain forward alone         {forward:8.2f} s")
    print(f"selectivity_maps, all of it {total:8.2f} s   = {total / (read + forward):.2f}x (read + forward)")
    print(f"  of which t-values + Moran's I of every map: {stats * 1e3:.0f} ms; the rest beyond read + forward "
          f"(hooks, {len(topo.sheets)} PNGs, JSON): {total - read - forward - stats:.2f} s")


if __name__ == "__main__":
    main()
