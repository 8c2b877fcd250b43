"""Training TopoNets: ``TopoTrainer`` (a ``transformers.Trainer`` whose ``compute_loss`` adds the
topographic term), the embedded corpus and data packing. May import every package but ``cli`` (level 4)."""
