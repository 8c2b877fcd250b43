"""hf_toponets: TopoNets (topographic neural networks trained with TopoLoss) for the Hugging Face stack."""

from .core.version import __version__

from .evaluation.blimp import evaluate_blimp
from .core.config import TopoConfig
from .conversion.downsample import downsample_model
from .core.loss import sheet_loss, sheet_losses, topo_loss, topo_losses
from .analysis.dimensionality import effective_dimensionality
from .analysis.smoothness import smoothness
from .evaluation.perplexity import perplexity
from .core.sheet import sheet_shape, weight_to_sheet
from .core.targets import TopoTarget, resolve_targets
from .training.trainer import TopoTrainer

__all__ = [
    "__version__",
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
