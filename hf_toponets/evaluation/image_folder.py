"""A folder of images with one subfolder per category (fLOC-style stimuli, or labelled evaluation images).

::

    FOLDER/faces/001.png  FOLDER/faces/002.jpg  FOLDER/bodies/...  FOLDER/scenes/...

Categories are the subfolders' names, sorted; images are the files with an image extension
(:data:`IMAGE_EXTENSIONS`, any case) directly inside each, sorted by name. Hidden entries (``.name``)
are skipped. Images are read with Pillow, converted to RGB, and turned into ``pixel_values`` by the
model's image processor, batch by batch.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import torch

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")


def read_image_folder(folder: str | Path, arg: str = "images") -> dict[str, list[Path]]:
    """``{category: [image paths]}`` of ``folder``; ``ValueError`` (naming ``arg``) when the folder is
    missing, has fewer than two category subfolders, or a category holds no image."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"{arg} {folder}: no such folder; give a folder with one subfolder of images per category")
    categories = {}
    for sub in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
        categories[sub.name] = sorted(p for p in sub.iterdir() if p.is_file() and not p.name.startswith(".")
                                      and p.suffix.lower() in IMAGE_EXTENSIONS)
    if len(categories) < 2:
        raise ValueError(f"{arg} {folder}: found {len(categories)} category subfolder(s) {sorted(categories)}; "
                         "give at least two (e.g. faces/, bodies/, scenes/), one subfolder of images per category")
    empty = [name for name, paths in categories.items() if not paths]
    if empty:
        raise ValueError(f"{arg} {folder}: the categories {empty} hold no image (files ending in "
                         f"{', '.join(IMAGE_EXTENSIONS)}); every category needs at least one")
    return categories


def load_images(paths: Sequence[Path]) -> list:
    """The images at ``paths`` as RGB PIL images (a file Pillow cannot read is a ``ValueError`` naming it)."""
    from PIL import Image, UnidentifiedImageError

    images = []
    for path in paths:
        try:
            with Image.open(path) as image:
                images.append(image.convert("RGB"))
        except (UnidentifiedImageError, OSError) as e:
            raise ValueError(f"cannot read the image {path}: {e}") from None
    return images


def image_batches(paths: Sequence[Path], processor, batch_size: int = 32) -> Iterator[torch.Tensor]:
    """``pixel_values (b, 3, H, W)`` of ``paths``, ``batch_size`` images at a time, in order."""
    if batch_size < 1:
        raise ValueError(f"image_batches: batch_size must be >= 1, got {batch_size}")
    for start in range(0, len(paths), batch_size):
        yield processor(load_images(paths[start : start + batch_size]), return_tensors="pt")["pixel_values"]


def labelled_batches(categories: Mapping[str, Sequence[Path]], processor, label2id: Mapping[str, int],
                     batch_size: int = 32) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Every image of ``categories`` as ``(pixel_values, labels)`` batches held in memory (evaluated
    again by each model of a sweep); a category's label is ``label2id[name]`` (a model's config).
    ``ValueError`` for a category name that is not one of the model's labels."""
    unknown = sorted(set(categories) - set(label2id))
    if unknown:
        shown = ", ".join(list(label2id)[:8]) + (", ..." if len(label2id) > 8 else "")
        raise ValueError(f"the category folders {unknown} are not labels of the model; name each subfolder "
                         f"after one of its {len(label2id)} labels ({shown})")
    paths = [p for name in categories for p in categories[name]]
    labels = torch.tensor([label2id[name] for name in categories for _ in categories[name]])
    return [(pixels, labels[i * batch_size : i * batch_size + len(pixels)])
            for i, pixels in enumerate(image_batches(paths, processor, batch_size))]
