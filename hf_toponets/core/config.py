"""TopoConfig: which layers are topographic and how strongly; what travels with a checkpoint.

The config is stored as the ``topo`` entry of a model's ``config.json`` (see
:func:`TopoConfig.to_dict`), so plain ``from_pretrained`` and Hub pushes keep it.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass, field
from typing import Any

from .resample import INTERPOLATIONS, check_interpolation

CONFIG_KEY = "topo"  # the entry of config.json that holds the TopoConfig
ADAPTER_CONFIG_FILE = "topo_config.json"  # the TopoConfig beside a PEFT adapter (adapter_config.json is PEFT's own)
SCHEDULE_KINDS = ("constant", "linear", "cosine")


def _check_names(value, arg: str, allow_empty: bool) -> None:
    if value is None:  # target_modules: the family's default; exclude_modules: nothing excluded
        return
    if isinstance(value, str):
        if not value:
            raise ValueError(f"TopoConfig: {arg} is an empty string; give a regex or a list of names")
        return
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) and v for v in value):
        if not value and not allow_empty:
            raise ValueError(f"TopoConfig: {arg} is empty; name at least one module, e.g. ['c_fc']")
        return
    raise ValueError(f"TopoConfig: {arg} must be a regex str or a list of module names, got {value!r}")


def _shared_sheets_from(value) -> dict[str, str] | None:
    """``shared_sheets`` as a ``{leaf name: leaf name}`` dict (a JSON string is parsed: the command line's form)."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            raise ValueError(f"TopoConfig: shared_sheets {value!r} is not JSON, e.g. '{{\"up_proj\": \"gate_proj\"}}'") from None
    if value is None:
        return None
    names_ok = isinstance(value, dict) and value and all(isinstance(k, str) and isinstance(v, str) and k and v
                                                         and "." not in k + v for k, v in value.items())
    if not names_ok:
        raise ValueError(
            "TopoConfig: shared_sheets must map a target's leaf name to its gate's leaf name (no dots), "
            f"e.g. {{'up_proj': 'gate_proj'}} or {{'gate_up_proj': 'gate_up_proj'}}; got {value!r}"
        )
    return dict(value)


def _phase_from(p, i: int) -> str:
    """One tau-schedule phase as its canonical string ``kind:steps:start:end``."""
    if isinstance(p, str):
        parts = p.split(":")
        if len(parts) not in (2, 3, 4):
            raise ValueError(f"TopoConfig: tau_schedule[{i}] {p!r} is not 'kind:steps[:start[:end]]', e.g. 'linear:1000:0:1'")
        p = dict(zip(("kind", "steps", "start", "end"), parts))
        try:
            p["steps"] = int(p["steps"])
        except ValueError:
            raise ValueError(f"TopoConfig: tau_schedule[{i}] steps must be a positive int, got {p['steps']!r}") from None
    if not isinstance(p, dict):
        raise ValueError(f"TopoConfig: tau_schedule[{i}] must be a dict or a 'kind:steps:start:end' string, got {p!r}")
    unknown = set(p) - {"kind", "steps", "start", "end"}
    if unknown:
        raise ValueError(f"TopoConfig: tau_schedule[{i}] has unknown keys {sorted(unknown)}")
    kind, steps = p.get("kind"), p.get("steps")
    if kind not in SCHEDULE_KINDS:
        raise ValueError(f"TopoConfig: tau_schedule[{i}] kind must be one of {SCHEDULE_KINDS}, got {kind!r}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps <= 0:
        raise ValueError(f"TopoConfig: tau_schedule[{i}] steps must be a positive int, got {steps!r}")
    try:
        start = float(p.get("start", 1.0))
        end = float(p.get("end", start))
    except (TypeError, ValueError):
        raise ValueError(f"TopoConfig: tau_schedule[{i}] start/end must be numbers, got {p!r}") from None
    if min(start, end) < 0 or not math.isfinite(start + end):
        raise ValueError(f"TopoConfig: tau_schedule[{i}] start/end must be finite and >= 0, got {start}, {end}")
    return f"{kind}:{steps}:{start!r}:{end!r}"


def schedule_multiplier(phases: list[str], step: int) -> float:
    """Multiplier of tau after ``step`` optimizer steps; phases run one after another.

    A phase ``kind:n:a:b`` goes from ``a`` to ``b`` over ``n`` steps: ``constant`` stays at ``a``,
    ``linear`` is ``a + (b - a) s / n``, ``cosine`` is ``b + (a - b) (1 + cos(pi s / n)) / 2``.
    After the last phase its end value holds; no phases means 1.

    >>> schedule_multiplier(["linear:10:0.0:1.0", "cosine:10:1.0:0.0"], 15)
    0.5
    """
    value = 1.0
    for phase in phases:
        kind, n, a, b = phase.split(":")
        n, a, b = int(n), float(a), float(b)
        if kind == "constant":
            value = a
        elif step < n and kind == "linear":
            return a + (b - a) * step / n
        elif step < n:  # cosine
            return b + (a - b) * 0.5 * (1.0 + math.cos(math.pi * step / n))
        else:
            value = b
        if step < n:
            return value
        step -= n
    return value


@dataclass
class TopoConfig:
    """Which modules get TopoLoss, and with what blur and weight.

    >>> cfg = TopoConfig(target_modules=["c_fc"], tau=1.0)
    >>> TopoConfig.from_dict(cfg.to_dict()) == cfg
    True
    """

    target_modules: list[str] | str = field(
        default=None,
        metadata={"help": "A regex (full match on the dotted name) or a list of names matched exactly or as a '.suffix'. "
                  "None: the model family's MLP (hf_toponets.core.targets.FAMILY_TARGETS, by config.model_type)."},
    )
    exclude_modules: list[str] | str = field(
        default=None, metadata={"help": "Modules to leave out, same matching rules; applied first."}
    )
    tau: float = field(default=1.0, metadata={"help": "Weight of the topographic term (>= 0); 0 only logs it."})
    factor_h: float = field(default=3.0, metadata={"help": "Blur (downsampling) factor along the sheet's height (>= 1)."})
    factor_w: float = field(default=3.0, metadata={"help": "Blur (downsampling) factor along the sheet's width (>= 1)."})
    interpolation: str = field(default="bilinear", metadata={"help": f"Blur interpolation, one of {INTERPOLATIONS}."})
    tau_schedule: list[str] = field(
        default_factory=list,
        metadata={
            "help": "Phases 'kind:steps:start:end' (kind constant|linear|cosine; dicts also accepted) that "
            "multiply tau per optimizer step, chained in order; the last end holds afterwards. Empty: constant."
        },
    )
    shared_sheets: dict[str, str] | str | None = field(
        default=None,
        metadata={"help": "Gated MLPs, act(gate x) * up x: {target leaf name: its gate's leaf name}, e.g. "
                  "'{\"up_proj\": \"gate_proj\"}' (JSON on the command line). Unit u's gate row and target row, "
                  "concatenated, are its vector on one (h, w, d_gate + d_up) sheet, so one TopoLoss trains both. A name "
                  "paired with itself is a fused [gate; up] layer of 2n rows (Phi-3's gate_up_proj). None with "
                  "target_modules None: the family's pairing."},
    )
    sheets: dict[str, list[int]] | None = field(
        default=None, init=False, metadata={"help": "Filled at save time: each target's sheet shape [h, w, d]."}
    )

    def __post_init__(self):
        if isinstance(self.target_modules, tuple):
            self.target_modules = list(self.target_modules)
        if isinstance(self.exclude_modules, tuple):
            self.exclude_modules = list(self.exclude_modules)
        _check_names(self.target_modules, "target_modules", allow_empty=False)
        self.shared_sheets = _shared_sheets_from(self.shared_sheets)
        _check_names(self.exclude_modules, "exclude_modules", allow_empty=True)
        if isinstance(self.tau, bool) or not isinstance(self.tau, (int, float)) or not self.tau >= 0 or not math.isfinite(self.tau):
            raise ValueError(f"TopoConfig: tau must be a finite number >= 0, got {self.tau!r}")
        for arg in ("factor_h", "factor_w"):
            value = getattr(self, arg)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 1 or not math.isfinite(value):
                raise ValueError(f"TopoConfig: {arg} must be a finite number >= 1, got {value!r}")
        check_interpolation(self.interpolation, "TopoConfig")
        self.tau, self.factor_h, self.factor_w = float(self.tau), float(self.factor_h), float(self.factor_w)
        if isinstance(self.tau_schedule, (str, dict)):
            self.tau_schedule = [self.tau_schedule]
        self.tau_schedule = [_phase_from(p, i) for i, p in enumerate(self.tau_schedule or [])]

    def tau_at(self, step: int) -> float:
        """tau after ``step`` optimizer steps, following ``tau_schedule``."""
        return self.tau * schedule_multiplier(self.tau_schedule, step)

    def with_sheets(self, sheets: dict[str, list[int]]) -> "TopoConfig":
        """A copy that records each target's sheet shape ``[h, w, d]``."""
        clean = {str(k): [int(x) for x in v] for k, v in sheets.items()}
        if any(len(v) != 3 or min(v) < 1 for v in clean.values()):
            raise ValueError(f"TopoConfig: sheets must map module names to [h, w, d] >= 1, got {sheets}")
        out = dataclasses.replace(self)
        out.sheets = clean
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict, with the hf_toponets version that wrote it."""
        from .version import __version__

        return {**dataclasses.asdict(self), "hf_toponets_version": __version__}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TopoConfig":
        """Inverse of :meth:`to_dict`; unknown keys are an error naming the valid ones."""
        data = {k: v for k, v in data.items() if k != "hf_toponets_version"}
        valid = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - valid
        if unknown:
            raise ValueError(f"TopoConfig: unknown keys {sorted(unknown)}; valid keys are {sorted(valid)}")
        sheets = data.pop("sheets", None)
        config = cls(**data)
        return config if sheets is None else config.with_sheets(sheets)

    @classmethod
    def from_pretrained(cls, path_or_repo_id: str, revision: str | None = None, token: str | None = None) -> "TopoConfig":
        """Read a saved TopoNet's config: the ``topo`` entry of a model folder's (or Hub repo's) ``config.json``,
        or an adapter folder's :data:`ADAPTER_CONFIG_FILE` (a PEFT adapter has no ``config.json``)."""
        path = os.fspath(path_or_repo_id)
        if os.path.isdir(path):
            config_file = os.path.join(path, "config.json")
            if not os.path.isfile(config_file) and os.path.isfile(os.path.join(path, ADAPTER_CONFIG_FILE)):
                config_file = os.path.join(path, ADAPTER_CONFIG_FILE)
            elif not os.path.isfile(config_file):
                raise ValueError(f"TopoConfig.from_pretrained: {path} has neither config.json nor {ADAPTER_CONFIG_FILE}; "
                                 "is it a saved model or adapter folder?")
        else:
            from huggingface_hub import hf_hub_download  # only Hub repos need the network
            from huggingface_hub.errors import EntryNotFoundError

            try:
                config_file = hf_hub_download(path, "config.json", revision=revision, token=token)
            except EntryNotFoundError:  # an adapter repo
                config_file = hf_hub_download(path, ADAPTER_CONFIG_FILE, revision=revision, token=token)
        with open(config_file, encoding="utf-8") as f:
            data = json.load(f)
        if os.path.basename(config_file) == ADAPTER_CONFIG_FILE:
            return cls.from_dict(data)
        if CONFIG_KEY not in data:
            raise ValueError(
                f"TopoConfig.from_pretrained: {path}'s config.json has no '{CONFIG_KEY}' entry; "
                "it was not saved by hf_toponets (train it with TopoTrainer or save it with save_topo_metadata)"
            )
        return cls.from_dict(data[CONFIG_KEY])
