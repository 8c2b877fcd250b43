"""The method, pure torch: ``TopoConfig``, sheet geometry, target matching, interpolation operators,
TopoLoss, the training hooks and the ``topo`` entry of ``config.json``. Imports nothing else from
hf_toponets (level 0)."""
