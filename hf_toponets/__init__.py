"""hf_toponets: TopoNets (topographic neural networks trained with TopoLoss) for the Hugging Face stack."""

__version__ = "0.1.0"

from .blimp import evaluate_blimp
from .config import TopoConfig
from .downsample import downsample_model
from .loss import sheet_loss, sheet_losses, topo_loss, topo_losses
from .metrics import effective_dimensionality, perplexity, smoothness
from .sheet import sheet_shape, weight_to_sheet
from .targets import TopoTarget, resolve_targets
from .trainer import TopoTrainer

__all__ = [
    "TopoConfig",
    "TopoTarget",
    "TopoTrainer",
    "downsample_model",
    "effective_dimensionality",
    "evaluate_blimp",
    "perplexity",
    "resolve_targets",
    "smoothness",
    "sheet_loss",
    "sheet_losses",
    "sheet_shape",
    "topo_loss",
    "topo_losses",
    "weight_to_sheet",
]
