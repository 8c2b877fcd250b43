"""Measuring topography: smoothness, effective dimensionality, selectivity, activation statistics,
L1 pruning, downsampling sweeps, plots and the ``analyze`` report. Imports ``core``, ``evaluation``,
``hub`` and ``conversion``, never transformers' Trainer (level 3)."""
