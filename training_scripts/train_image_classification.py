"""Train (or fine-tune) an image-classification TopoNet with TopoTrainer.

    python training_scripts/train_image_classification.py       # the embedded default: a small ViT on digits, CPU, minutes
    python training_scripts/train_image_classification.py training_scripts/configs/digits_resnet.yaml   # a small ResNet
    accelerate launch --config_file training_scripts/accelerate/multi_gpu.yaml \\
        training_scripts/train_image_classification.py training_scripts/configs/resnet18_imagenet.yaml --tau 10

In the style of transformers' image-classification example: ``AutoModelForImageClassification``, an
image processor, a Hub dataset (``dataset_name``) or an ``imagefolder`` (``train_dir``, ``validation_dir``),
transforms applied on the fly; here with :class:`hf_toponets.TopoTrainer` and top-1 accuracy at every
evaluation (``eval_accuracy``). Arguments are three dataclasses: :class:`ScriptArguments`,
``transformers.TrainingArguments`` and :class:`hf_toponets.TopoConfig`, from a YAML file then flags
(:func:`hf_toponets.training.arguments.parse_args`). Without a YAML file, ``configs/digits_vit.yaml``:
scikit-learn's 1,797 handwritten digits (real 8 x 8 images, upsampled to 32 x 32, shipped with the
package), a 4-layer ViT with TopoLoss on every MLP ``fc2``, written to ``outputs/toponet-digits-vit``
with its ``topo`` entry, image processor and model card.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path

from transformers import (AutoConfig, AutoImageProcessor, AutoModelForImageClassification, ConvNextImageProcessorPil,
                          TrainingArguments, set_seed)

from hf_toponets import TopoConfig, TopoTrainer
from hf_toponets.evaluation.classification import compute_accuracy
from hf_toponets.training.arguments import parse_args
from hf_toponets.training.images import collate_images, embedded_digits, image_transform

HERE = Path(__file__).resolve().parent
DEFAULT_CONFIG = HERE / "configs" / "digits_vit.yaml"
EMBEDDED = "sklearn.datasets.load_digits (UCI handwritten digits)"
logger = logging.getLogger("train_image_classification")

# Named architectures, from scratch: the paper's three vision models and the embedded default's small ones.
# A ViT's image_size is the script's image_size.
ARCHITECTURES = {
    "resnet-18": ("resnet", dict(layer_type="basic", depths=[2, 2, 2, 2], hidden_sizes=[64, 128, 256, 512], embedding_size=64)),
    "resnet-50": ("resnet", dict(layer_type="bottleneck", depths=[3, 4, 6, 3], hidden_sizes=[256, 512, 1024, 2048],
                                 embedding_size=64)),
    "vit-b-32": ("vit", dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072,
                             patch_size=32)),
    "tiny-resnet": ("resnet", dict(layer_type="basic", depths=[1, 1, 1], hidden_sizes=[64, 128, 256], embedding_size=32)),
    "tiny-vit": ("vit", dict(hidden_size=144, num_hidden_layers=4, num_attention_heads=4, intermediate_size=576,
                             patch_size=8, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)),
}


@dataclass
class ScriptArguments:
    dataset_name: str | None = field(default=None, metadata={"help": "Hub dataset id; None (and no train_dir): the embedded digits (offline)."})
    dataset_config: str | None = field(default=None, metadata={"help": "Dataset config name."})
    train_dir: str | None = field(default=None, metadata={"help": "An imagefolder of training images (one subfolder per class)."})
    validation_dir: str | None = field(default=None, metadata={"help": "An imagefolder of evaluation images."})
    train_split: str = field(default="train", metadata={"help": "Split to train on."})
    eval_split: str | None = field(default="validation", metadata={"help": "Split to evaluate on; None or missing: hold out eval_fraction of train."})
    eval_fraction: float = field(default=0.15, metadata={"help": "Share of train held out (stratified, seed 0) when there is no eval split."})
    image_column: str = field(default="image", metadata={"help": "Column holding the images."})
    label_column: str = field(default="label", metadata={"help": "Column holding the integer class labels (a ClassLabel)."})
    max_train_samples: int | None = field(default=None, metadata={"help": "Train on the first N training images only."})
    max_eval_samples: int | None = field(default=None, metadata={"help": "Evaluate on the first N evaluation images only."})
    model_name_or_path: str | None = field(default=None, metadata={"help": "Pretrained weights to fine-tune; None: train from scratch."})
    architecture: str = field(default="tiny-vit", metadata={"help": f"From scratch: one of {sorted(ARCHITECTURES)}."})
    image_processor_name: str | None = field(default=None, metadata={"help": "Image processor id/path; None: resize + centre crop + ImageNet normalisation built here."})
    image_size: int = field(default=224, metadata={"help": "Side of the square model input (built-in processor and a ViT's image_size)."})
    crop_pct: float = field(default=0.875, metadata={"help": "Built-in processor: resize the short side to image_size / crop_pct, then centre-crop."})
    augment: bool = field(default=True, metadata={"help": "Random resized crop + horizontal flip of training images."})
    license: str | None = field(default=None, metadata={"help": "License for the model card."})


def parse(argv: list[str]):
    """A YAML file first, then flags that override it; without a YAML file, the embedded default's."""
    return parse_args((ScriptArguments, TrainingArguments, TopoConfig), argv, DEFAULT_CONFIG)


def load_splits(script: ScriptArguments):
    """``(train, eval)`` datasets of images and labels: the embedded digits, an imagefolder or a Hub dataset."""
    from datasets import load_dataset

    if script.train_dir:
        files = {"train": f"{script.train_dir}/**"} | ({"validation": f"{script.validation_dir}/**"} if script.validation_dir else {})
        raw = load_dataset("imagefolder", data_files=files)
    elif script.dataset_name:
        raw = load_dataset(script.dataset_name, script.dataset_config)
    else:
        raw = {"train": embedded_digits(script.image_size)}
    if script.train_split not in raw:
        raise ValueError(f"train_split {script.train_split!r} is not a split of the dataset; it has {sorted(raw)}")
    train = raw[script.train_split]
    eval_split = script.eval_split if script.eval_split in raw else None
    if eval_split is None:  # stratified hold-out, the same for every seed
        parts = train.train_test_split(test_size=script.eval_fraction, seed=0, stratify_by_column=script.label_column)
        train, held_out = parts["train"], parts["test"]
    else:
        held_out = raw[eval_split]
    if script.max_train_samples is not None:
        train = train.select(range(min(script.max_train_samples, len(train))))
    if script.max_eval_samples is not None:
        held_out = held_out.select(range(min(script.max_eval_samples, len(held_out))))
    return train, held_out


def build_processor(script: ScriptArguments):
    if script.image_processor_name:
        return AutoImageProcessor.from_pretrained(script.image_processor_name)
    # PIL backend: no torchvision needed. ImageNet mean/std (ConvNext's defaults).
    return ConvNextImageProcessorPil(size={"shortest_edge": script.image_size}, crop_pct=script.crop_pct)


def build_model(script: ScriptArguments, labels: list[str]):
    label_info = dict(num_labels=len(labels), id2label=dict(enumerate(labels)), label2id={n: i for i, n in enumerate(labels)})
    if script.model_name_or_path:
        return AutoModelForImageClassification.from_pretrained(script.model_name_or_path, use_safetensors=True,
                                                               ignore_mismatched_sizes=True, **label_info)
    if script.architecture not in ARCHITECTURES:
        raise ValueError(f"architecture must be one of {sorted(ARCHITECTURES)}, got {script.architecture!r}")
    model_type, kwargs = ARCHITECTURES[script.architecture]
    if model_type == "vit":
        kwargs = {**kwargs, "image_size": script.image_size}
    return AutoModelForImageClassification.from_config(AutoConfig.for_model(model_type, **kwargs, **label_info))


def main(argv: list[str] | None = None) -> TopoTrainer:
    script, args, topo = parse(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args.remove_unused_columns = False  # the transforms need the raw image column
    train, held_out = load_splits(script)
    labels = train.features[script.label_column].names
    processor = build_processor(script)
    train = train.with_transform(image_transform(processor, script.image_column, script.label_column,
                                                 script.image_size if script.augment else None))
    held_out = held_out.with_transform(image_transform(processor, script.image_column, script.label_column))
    set_seed(args.seed)  # the Trainer seeds only after the model exists: seed its initialisation too
    model = build_model(script, labels)
    card = {"datasets": [script.dataset_name or script.train_dir or EMBEDDED]}
    if script.model_name_or_path:
        card["base_model"] = script.model_name_or_path
    if script.license:
        card["license"] = script.license
    trainer = TopoTrainer(model=model, args=args, train_dataset=train, eval_dataset=held_out, processing_class=processor,
                          data_collator=collate_images, compute_metrics=compute_accuracy, topo_config=topo, model_card=card)
    trainer.train()
    metrics = trainer.evaluate()
    trainer.save_model()
    if trainer.is_world_process_zero():
        topo_logs = [h["topo/loss"] for h in trainer.state.log_history if "topo/loss" in h]
        print(f"\nTopoNet saved to {Path(args.output_dir).resolve()} (config.json carries its 'topo' entry, "
              "preprocessor_config.json the image processor; README.md is its card)")
        if topo_logs:
            print(f"topo/loss: {topo_logs[0]:.4f} at the first log -> {topo_logs[-1]:.4f} at the last (tau={topo.tau})")
        print(f"held-out top-1 accuracy: {metrics['eval_accuracy']:.4f} over {len(held_out)} images")
    return trainer


if __name__ == "__main__":
    main()
