"""Turning one model into another: downsampling topographic sheets into smaller configs (one row per
MLP family). Imports ``core``, ``evaluation`` and ``hub`` (level 2)."""

from transformers import AutoConfig, AutoModelForImageClassification

from .blurpool_resnet import BlurPoolResNetConfig, BlurPoolResNetForImageClassification

# `import hf_toponets` makes converted BlurPool ResNets load with the plain Auto classes (no remote code)
AutoConfig.register(BlurPoolResNetConfig.model_type, BlurPoolResNetConfig, exist_ok=True)
AutoModelForImageClassification.register(BlurPoolResNetConfig, BlurPoolResNetForImageClassification, exist_ok=True)
