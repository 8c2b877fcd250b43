"""hf_toponets: TopoNets (topographic neural networks trained with TopoLoss) for the Hugging Face stack.

The public names below are imported on first use (PEP 562), so that ``import hf_toponets`` and
``hf-toponets --help`` do not pay for torch and transformers until a name is needed.
"""

from __future__ import annotations

import importlib
import sys
from typing import TYPE_CHECKING

from .core.version import __version__

# public name -> the module that defines it
_EXPORTS = {
    "TopoConfig": "core.config",
    "TopoTarget": "core.targets",
    "resolve_targets": "core.targets",
    "sheet_shape": "core.sheet",
    "weight_to_sheet": "core.sheet",
    "sheet_loss": "core.loss",
    "sheet_losses": "core.loss",
    "topo_loss": "core.loss",
    "topo_losses": "core.loss",
    "evaluate_blimp": "evaluation.blimp",
    "perplexity": "evaluation.perplexity",
    "downsample_model": "conversion.downsample",
    "convert_checkpoint": "conversion.checkpoints",
    "scan_layers": "core.scan",
    "smoothness": "analysis.smoothness",
    "effective_dimensionality": "analysis.dimensionality",
    "integration_windows": "analysis.windows",
    "selectivity_maps": "analysis.selectivity_maps",
    "TopoTrainer": "training.trainer",
    "TopoTrainerMixin": "training.mixin",
    "topo_hooks": "core.hooks",
}
__all__ = ["__version__", *sorted(_EXPORTS)]


# Converted BlurPool ResNets load with transformers' Auto classes once hf_toponets.conversion is imported (it
# registers them). When transformers is already loaded, `import hf_toponets` does that too, at the price of
# torch; otherwise it stays lazy and hf_toponets' own loaders (CLI, convert) import it before they load.
if "transformers" in sys.modules:
    importlib.import_module(".conversion", __name__)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'hf_toponets' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})


if TYPE_CHECKING:  # static tools see the eager imports
    from .analysis.dimensionality import effective_dimensionality
    from .analysis.smoothness import smoothness
    from .analysis.selectivity_maps import selectivity_maps
    from .analysis.windows import integration_windows
    from .conversion.checkpoints import convert_checkpoint
    from .conversion.downsample import downsample_model
    from .core.config import TopoConfig
    from .core.hooks import topo_hooks
    from .core.loss import sheet_loss, sheet_losses, topo_loss, topo_losses
    from .core.scan import scan_layers
    from .core.sheet import sheet_shape, weight_to_sheet
    from .core.targets import TopoTarget, resolve_targets
    from .evaluation.blimp import evaluate_blimp
    from .evaluation.perplexity import perplexity
    from .training.mixin import TopoTrainerMixin
    from .training.trainer import TopoTrainer
