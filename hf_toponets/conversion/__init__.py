"""Turning one model into another: downsampling topographic sheets into smaller configs (one row per
MLP family); the paper's published checkpoints into Hugging Face folders (:mod:`.checkpoints`).
Imports ``core``, ``evaluation`` and ``hub`` (level 2).

Importing this package registers the BlurPool ResNet of converted ResNets with transformers' Auto classes.
"""

from transformers import AutoConfig, AutoModelForImageClassification

from .blurpool_resnet import BlurPoolResNetConfig, BlurPoolResNetForImageClassification

# converted BlurPool ResNets then load with the plain Auto classes (no remote code)
AutoConfig.register(BlurPoolResNetConfig.model_type, BlurPoolResNetConfig, exist_ok=True)
AutoModelForImageClassification.register(BlurPoolResNetConfig, BlurPoolResNetForImageClassification, exist_ok=True)
