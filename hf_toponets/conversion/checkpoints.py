"""The paper's published TopoNets -> Hugging Face model folders: :func:`convert_checkpoint`.

One call reads a published file safely (:mod:`.source`), recognises its format, rebuilds it as a
transformers model (:mod:`.nanogpt` -> ``GPT2LMHeadModel``, :mod:`.vit` -> ``ViTForImageClassification``,
:mod:`.resnet` -> a (BlurPool) ResNet classifier), measures the conversion against the source
architecture's own forward, scans every layer's TopoLoss, and writes a folder that plain
``from_pretrained`` loads: safetensors, ``config.json`` with its ``topo`` entry and the provenance
(``topo_source``), the tokenizer or image processor, and the model card. The folder appears all at once
(built in a temporary folder, then renamed), so a failure leaves nothing behind.
"""

from __future__ import annotations

import logging
import math
import os
import warnings
from dataclasses import dataclass, field

import torch

from ..core.config import TopoConfig
from ..core.files import atomic_path
from ..core.metadata import attach_topo_config
from ..core.scan import compare_targets, scan_layers
from ..core.version import __version__
from ..hub.cards import SOURCE_KEY
from . import nanogpt, resnet, vit
from .source import FORMATS, SourceCheckpoint, detect_format, read_checkpoint, tau_from_name

logger = logging.getLogger(__name__)

DEFAULT_TARGETS = {"nanogpt": nanogpt.DEFAULT_TARGETS, "vit": vit.DEFAULT_TARGETS, "resnet": resnet.DEFAULT_TARGETS}
TOLERANCE = 1e-3  # largest accepted |converted - source| logit difference, relative to max(1, max |source logit|)
EVAL_CROP, EVAL_RESIZE = 224, 256  # the ImageNet evaluation transform: resize the short side to 256, crop 224


@dataclass
class Conversion:
    """What :func:`convert_checkpoint` wrote and measured."""

    output_dir: str = field(metadata={"help": "The new model folder."})
    format: str = field(metadata={"help": "Source format: nanogpt, vit or resnet."})
    architecture: str = field(metadata={"help": "The transformers class of the converted model."})
    logit_difference: float = field(metadata={"help": "max |converted - source| logit on the check input."})
    scan: dict[str, float] = field(metadata={"help": "TopoLoss of every Linear/Conv1D/Conv2d layer."})
    sheets: dict[str, list[int]] = field(metadata={"help": "The topo entry's target layers and their [h, w, d]."})
    disagreement: str | None = field(default=None, metadata={"help": "Why the scan contradicts the targets, if it does."})


def _tau(tau: float | None, path: str) -> float:
    if tau is None:
        tau = tau_from_name(path)
    if tau is None:
        raise ValueError(f"convert_checkpoint: tau is not in the file name {os.path.basename(path)!r} (published files "
                         "are named tau_<x>.pt); pass tau= (CLI: --tau X), the TopoLoss weight the model was trained with")
    return tau


def _build(fmt: str, source: SourceCheckpoint, num_heads: int | None):
    """``(model, reference forward: inputs -> logits, check input)`` for one format."""
    state, generator = source.state, torch.Generator().manual_seed(0)
    if num_heads is not None and fmt == "resnet":
        raise ValueError("convert_checkpoint: num_heads is for transformers (vit, nanogpt); a resnet has no heads")
    if fmt == "nanogpt":
        model_args = dict(source.model_args)
        if num_heads is not None and model_args.get("n_head") not in (None, num_heads):
            raise ValueError(f"convert_checkpoint: num_heads={num_heads} contradicts the checkpoint's model_args "
                             f"n_head={model_args['n_head']}")
        model_args.setdefault("n_head", num_heads)
        model = nanogpt.build_model(state, model_args)
        return model, lambda x: nanogpt.reference_logits(state, model_args, x), nanogpt.example_input(model.config, generator)
    if fmt == "vit":
        model = vit.build_model(state, source.model_name, num_heads)
        heads = model.config.num_attention_heads
        return model, lambda x: vit.reference_logits(state, heads, x), vit.example_input(model.config, generator)
    model = resnet.build_model(state)
    return model, lambda x: resnet.reference_logits(state, x), resnet.example_input(model.config, generator)


@torch.no_grad()
def logit_difference(model, reference, inputs: torch.Tensor) -> float:
    """``max |model(inputs).logits - reference(inputs)|``; ``ValueError`` beyond :data:`TOLERANCE`."""
    expected = reference(inputs)
    diff = float((model(inputs).logits - expected).abs().max())
    scale = max(1.0, float(expected.abs().max()))
    if not math.isfinite(diff) or diff > TOLERANCE * scale:
        raise ValueError(f"convert_checkpoint: the converted {type(model).__name__} differs from the source "
                         f"architecture by {diff:.3g} in the logits (max |logit| {scale:.3g}); the file's layout is "
                         "not the one the converter assumes, refusing to write a model that computes something else")
    return diff


def _tokenizer(name: str | None, fmt: str, vocab_size: int | None):
    if name is None:
        if fmt == "nanogpt":
            warnings.warn("convert_checkpoint: no tokenizer given; the folder will have none (blimp and analyze need "
                          "one): pass tokenizer='openai-community/gpt2' (or a local copy) for nanoGPT", stacklevel=3)
        return None
    if fmt != "nanogpt":
        raise ValueError(f"convert_checkpoint: tokenizer is for nanogpt checkpoints; a {fmt} model takes images")
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(name)
    if len(tokenizer) > vocab_size:
        raise ValueError(f"convert_checkpoint: tokenizer {name} has {len(tokenizer)} tokens but the model only "
                         f"{vocab_size} embeddings; it is not this model's tokenizer")
    return tokenizer


def _image_processor(crop: int):
    """The evaluation transform: resize the short side to ``crop * 256 / 224`` (bilinear), centre-crop, ImageNet norm."""
    from transformers import BitImageProcessorPil
    from transformers.image_utils import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD, PILImageResampling

    return BitImageProcessorPil(size={"shortest_edge": round(crop * EVAL_RESIZE / EVAL_CROP)},
                                resample=PILImageResampling.BILINEAR, crop_size={"height": crop, "width": crop},
                                image_mean=IMAGENET_DEFAULT_MEAN, image_std=IMAGENET_DEFAULT_STD)


def _prepare_language_model(model, tokenizer) -> None:
    """Token ids and the generation config: the padded vocabulary's extra ids are never generated."""
    if tokenizer is None:
        return
    for key in ("bos_token_id", "eos_token_id"):
        setattr(model.config, key, getattr(tokenizer, key))
        setattr(model.generation_config, key, getattr(tokenizer, key))
    padding = list(range(len(tokenizer), model.config.vocab_size))
    model.generation_config.suppress_tokens = padding or None


def _write_folder(output_dir: str, model, processor) -> None:
    """Save model, processor and card into a temporary folder beside ``output_dir``, then rename it."""
    from ..hub.folder import write_model_card

    with atomic_path(output_dir, folder=True) as tmp:
        model.save_pretrained(tmp)
        if processor is not None:
            processor.save_pretrained(tmp)
        write_model_card(tmp)


def convert_checkpoint(path: str | os.PathLike, output_dir: str | os.PathLike, format: str | None = None,
                       tau: float | None = None, targets: list[str] | str | None = None, tokenizer: str | None = None,
                       num_heads: int | None = None) -> Conversion:
    """Convert one of the paper's published checkpoints into a Hugging Face model folder.

    ``format``: ``"nanogpt"``, ``"vit"`` or ``"resnet"`` (default: from the keys); ``tau``: the TopoLoss weight
    (default: from a ``tau_<x>.pt`` file name); ``targets``: the topographic layers in ``target_modules`` syntax
    (default: the paper's, :data:`DEFAULT_TARGETS`); ``tokenizer``: a folder or Hub id saved with a NanoGPT
    (GPT-2's: ``openai-community/gpt2``); ``num_heads``: a ViT's head count when the checkpoint's ``args`` do
    not name a torchvision model. Warns when the layer scan contradicts the targets.

    >>> convert_checkpoint("tau_50.0.pt", "topo-nanogpt-tau50", tokenizer="openai-community/gpt2")  # doctest: +SKIP
    Conversion(output_dir='topo-nanogpt-tau50', format='nanogpt', architecture='GPT2LMHeadModel', ...)
    """
    path, output_dir = os.fspath(path), os.path.abspath(os.fspath(output_dir))
    if os.path.exists(output_dir) and (not os.path.isdir(output_dir) or os.listdir(output_dir)):
        raise ValueError(f"convert_checkpoint: output_dir {output_dir} exists and is not an empty folder; choose a new one")
    if format is not None and format not in FORMATS:
        raise ValueError(f"convert_checkpoint: format must be one of {FORMATS} or None (detect), got {format!r}")
    tau = _tau(tau, path)
    source = read_checkpoint(path)
    fmt = format or detect_format(source.state)
    model, reference, inputs = _build(fmt, source, num_heads)
    tok = _tokenizer(tokenizer, fmt, getattr(model.config, "vocab_size", None))
    stored = attach_topo_config(model, TopoConfig(target_modules=targets or DEFAULT_TARGETS[fmt], tau=tau))
    diff = logit_difference(model, reference, inputs)
    scan = scan_layers(model, stored.factor_h, stored.factor_w, stored.interpolation)
    disagreement = compare_targets(scan, stored.sheets)
    if disagreement:
        warnings.warn(f"convert_checkpoint: the layer scan disagrees with the targets {stored.target_modules!r}: "
                      f"{disagreement}", stacklevel=2)
    setattr(model.config, SOURCE_KEY, {
        "file": os.path.basename(path), "sha256": source.sha256, "format": fmt, "container": source.container,
        "converter": f"hf_toponets {__version__}", "logit_max_abs_diff": diff,
        "logit_check": f"{type(model).__name__} against the {fmt} forward on a seeded random input "
                       f"of shape {list(inputs.shape)}, every output",
        "layer_scan": scan, "scan_agrees": disagreement is None})
    _prepare_language_model(model, tok)
    processor = tok if fmt == "nanogpt" else _image_processor(getattr(model.config, "image_size", EVAL_CROP))
    _write_folder(output_dir, model, processor)
    logger.info("converted %s (%s) into %s: max |logit difference| %.3g", path, fmt, output_dir, diff)
    return Conversion(output_dir, fmt, type(model).__name__, diff, scan, stored.sheets, disagreement)
