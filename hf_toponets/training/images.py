"""Image data for image-classification TopoNets: the embedded digits, augmentation, batching.

The embedded data set is scikit-learn's handwritten digits (``sklearn.datasets.load_digits``): 1,797
real 8 x 8 grey images of the digits 0-9 (17 grey levels, 0-16), shipped inside the package, so a
run needs no network. Each becomes an RGB PIL image of ``size x size`` pixels (grey levels scaled to
0-255, bilinear upsampling), with an integer ``label`` and the class names ``"0"``-``"9"``.

Batches follow transformers' image-classification example: a ``Dataset.with_transform`` turns
the PIL images of each fetched batch into ``pixel_values`` with the model's image processor, and
:func:`collate_images` stacks them into ``{"pixel_values": (b, 3, H, W), "labels": (b,)}``.
"""

from __future__ import annotations

import math

import numpy as np
import torch

DIGIT_NAMES = [str(d) for d in range(10)]


def embedded_digits(size: int = 32):
    """scikit-learn's 1,797 digits as a ``datasets.Dataset`` with columns ``image`` (RGB PIL, ``size x size``)
    and ``label`` (``ClassLabel`` named ``"0"``-``"9"``), in scikit-learn's order.

    >>> ds = embedded_digits(16)  # doctest: +SKIP
    >>> len(ds), ds[0]["image"].size, ds.features["label"].names[:3]  # doctest: +SKIP
    (1797, (16, 16), ['0', '1', '2'])
    """
    from datasets import ClassLabel, Dataset, Features, Image
    from PIL import Image as PILImage
    from sklearn.datasets import load_digits

    if isinstance(size, bool) or not isinstance(size, int) or size < 8:
        raise ValueError(f"embedded_digits: size must be an int >= 8 (the digits are 8 x 8), got {size!r}")
    digits = load_digits()
    grey = np.rint(digits.images * (255.0 / 16.0)).astype(np.uint8)  # (1797, 8, 8), 0-16 -> 0-255
    images = [PILImage.fromarray(g).resize((size, size), PILImage.BILINEAR).convert("RGB") for g in grey]
    features = Features({"image": Image(), "label": ClassLabel(names=DIGIT_NAMES)})
    return Dataset.from_dict({"image": images, "label": [int(t) for t in digits.target]}, features=features)


def random_resized_crop(image, size: int, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3), attempts: int = 10):
    """Inception-style augmentation on a PIL image, with torch's RNG (seeded by the Trainer and per worker).

    A crop of area ``a * W * H`` (``a ~ U(scale)``) and aspect ``r`` (``log r ~ U(log ratio)``) at a
    uniform position, resized to ``size x size``; after ``attempts`` misses, the central crop of the
    aspect clamped to ``ratio``. Then a horizontal flip with probability 1/2.
    """
    from PIL import Image as PILImage

    width, height = image.size
    box = None
    for _ in range(attempts):
        area = width * height * float(torch.empty(1).uniform_(*scale))
        aspect = math.exp(float(torch.empty(1).uniform_(math.log(ratio[0]), math.log(ratio[1]))))
        w, h = round(math.sqrt(area * aspect)), round(math.sqrt(area / aspect))
        if 0 < w <= width and 0 < h <= height:
            left, top = int(torch.randint(0, width - w + 1, ())), int(torch.randint(0, height - h + 1, ()))
            box = (left, top, left + w, top + h)
            break
    if box is None:  # the central crop, its aspect clamped to the ratio range
        w, h = width, height
        if width / height < ratio[0]:
            h = round(width / ratio[0])
        elif width / height > ratio[1]:
            w = round(height * ratio[1])
        box = ((width - w) // 2, (height - h) // 2, (width - w) // 2 + w, (height - h) // 2 + h)
    crop = image.resize((size, size), PILImage.BILINEAR, box=box)
    return crop.transpose(PILImage.FLIP_LEFT_RIGHT) if bool(torch.rand(()) < 0.5) else crop


def image_transform(processor, image_column: str = "image", label_column: str = "label",
                    augment_size: int | None = None):
    """A ``Dataset.with_transform`` function: ``{image_column: [PIL], label_column: [int]}`` ->
    ``{"pixel_values": [(3, H, W) tensors], "labels": [int]}``.

    ``augment_size``: training images get :func:`random_resized_crop` to that size, then the
    processor's rescaling and normalisation only (its resize is skipped); ``None``: the processor's
    full evaluation pipeline (e.g. resize to 256, centre crop 224).
    """

    def transform(batch: dict) -> dict:
        for column in (image_column, label_column):
            if column not in batch:
                raise ValueError(f"image_transform: the dataset has no column {column!r}; it has {sorted(batch)}")
        images = [im.convert("RGB") for im in batch[image_column]]
        if augment_size is None:
            pixels = processor(images, return_tensors="pt")["pixel_values"]
        else:
            pixels = processor([random_resized_crop(im, augment_size) for im in images], do_resize=False,
                               return_tensors="pt")["pixel_values"]
        return {"pixel_values": list(pixels), "labels": list(batch[label_column])}

    return transform


def collate_images(examples: list[dict]) -> dict[str, torch.Tensor]:
    """``[{"pixel_values": (3, H, W), "labels": int}, ...]`` -> ``{"pixel_values": (b, 3, H, W), "labels": (b,)}``."""
    return {"pixel_values": torch.stack([torch.as_tensor(e["pixel_values"]) for e in examples]),
            "labels": torch.tensor([int(e["labels"]) for e in examples], dtype=torch.long)}
