"""Arguments of the training scripts: a YAML config first, then command-line flags that override it.

Every script in ``training_scripts/`` parses a few dataclasses (its own ``ScriptArguments``,
``transformers.TrainingArguments`` and :class:`~hf_toponets.TopoConfig`) with ``HfArgumentParser``.
A YAML file's ``{key: value}`` entries become the flags ``--key value`` placed before the user's own,
so a later flag wins::

    python training_scripts/train_clm.py training_scripts/configs/gpt_neo_125m_wikipedia.yaml --tau 10
"""

from __future__ import annotations

import json
from pathlib import Path


def yaml_to_flags(path: str | Path) -> list[str]:
    """``{key: value}`` -> ``["--key", "value"]``; lists give several values, dicts become JSON.

    >>> import tempfile, os
    >>> f = os.path.join(tempfile.mkdtemp(), "c.yaml"); _ = open(f, "w").write("tau: 5\\nlayers: [a, b]\\n")
    >>> yaml_to_flags(f)
    ['--tau', '5', '--layers', 'a', 'b']
    """
    import yaml

    path = Path(path)
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping of argument names to values")
    flags = []
    for key, value in data.items():
        values = value if isinstance(value, list) else [value]
        flags.append(f"--{key}")
        flags.extend(json.dumps(v) if isinstance(v, dict) else str(v) for v in values)
    return flags


def parse_args(dataclass_types: tuple, argv: list[str], default_config: str | Path) -> tuple:
    """The dataclasses filled from ``argv``: a YAML file first, then flags that override it; without a
    YAML file as the first argument, ``default_config`` supplies the values (the embedded default run)."""
    from transformers import HfArgumentParser

    if not argv or not argv[0].endswith((".yaml", ".yml")):
        argv = [str(default_config), *argv]
    argv = yaml_to_flags(argv[0]) + list(argv[1:])
    return HfArgumentParser(dataclass_types).parse_args_into_dataclasses(argv)
