"""hf_toponets.training.images: the embedded digits against scikit-learn's arrays, augmentation, batching."""

import numpy as np
import pytest
import torch
from PIL import Image

from hf_toponets.training.images import collate_images, embedded_digits, image_transform, random_resized_crop


def test_digits_are_scikit_learns_images_and_labels():
    from sklearn.datasets import load_digits

    digits = load_digits()
    native = embedded_digits(8)  # no resampling at 8 x 8: the pixels are the scaled grey levels
    assert len(native) == 1797 and native.features["label"].names == [str(d) for d in range(10)]
    assert list(native["label"]) == digits.target.tolist()
    for i in (0, 17, 1796):
        pixels = np.asarray(native[i]["image"])
        assert pixels.shape == (8, 8, 3) and (pixels == pixels[..., :1]).all()  # grey as RGB
        assert (pixels[..., 0] == np.rint(digits.images[i] * 255 / 16)).all()
    big = embedded_digits(32)[5]["image"]
    assert big.size == (32, 32) and big.mode == "RGB"
    with pytest.raises(ValueError, match="embedded_digits: size must be an int >= 8"):
        embedded_digits(4)


def test_random_resized_crop_size_seed_and_whole_image_case():
    image = Image.fromarray(np.arange(40 * 30 * 3, dtype=np.uint8).reshape(30, 40, 3))
    torch.manual_seed(0)
    a = random_resized_crop(image, 16)
    torch.manual_seed(0)
    b = random_resized_crop(image, 16)
    assert a.size == (16, 16) and np.array_equal(np.asarray(a), np.asarray(b))
    square = Image.fromarray(np.random.default_rng(0).integers(0, 255, (20, 20, 3), dtype=np.uint8))
    whole = np.asarray(square.resize((12, 12), Image.BILINEAR))
    for seed in range(4):  # scale 1 and ratio 1 on a square: the whole image, flipped or not
        torch.manual_seed(seed)
        crop = np.asarray(random_resized_crop(square, 12, scale=(1.0, 1.0), ratio=(1.0, 1.0)))
        assert np.array_equal(crop, whole) or np.array_equal(crop, whole[:, ::-1])
    torch.manual_seed(0)  # an impossible area: the central crop of the clamped aspect (40 x 30 is within 3/4..4/3)
    crop = np.asarray(random_resized_crop(image, 10, scale=(2.0, 3.0)))
    assert np.array_equal(crop, np.asarray(image.resize((10, 10), Image.BILINEAR))) or \
        np.array_equal(crop, np.asarray(image.resize((10, 10), Image.BILINEAR))[:, ::-1])


def test_transform_and_collate_give_the_processor_batch():
    from transformers import ConvNextImageProcessorPil

    processor = ConvNextImageProcessorPil(size={"shortest_edge": 32}, crop_pct=1.0)
    data = embedded_digits(32).select(range(5))
    batch = collate_images([data.with_transform(image_transform(processor))[i] for i in range(5)])
    expected = processor(list(data["image"]), return_tensors="pt")["pixel_values"]
    assert torch.equal(batch["pixel_values"], expected)
    assert batch["labels"].tolist() == list(data["label"]) and batch["labels"].dtype == torch.long
    augmented = data.with_transform(image_transform(processor, augment_size=24))[0]
    assert tuple(augmented["pixel_values"].shape) == (3, 24, 24)
    with pytest.raises(ValueError, match="image_transform: the dataset has no column 'img'"):
        data.with_transform(image_transform(processor, image_column="img"))[0]
