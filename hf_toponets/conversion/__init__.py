"""Turning one model into another: downsampling topographic sheets into smaller configs (one row per
MLP family). Imports ``core``, ``evaluation`` and ``hub`` (level 2)."""
