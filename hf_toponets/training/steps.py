"""Cached pipeline steps: a step reruns only when its inputs change, and an interrupted run resumes.

Each step ``name`` keeps one record, ``<folder>/<name>.json``, written atomically once the step has
finished::

    {"key": sha256(canonical JSON of the inputs), "inputs": {...}, "result": {...},
     "seconds": wall time, "cpu_seconds": process CPU time}

A later run with the same inputs (and whose declared output files still exist) reads the result
instead of running the step; changed inputs run it again and replace the record. A run killed
mid-step leaves no record for that step, so the next run redoes exactly the unfinished steps.
Keys cover the inputs a step is given, not the code that runs it: after changing the code, delete
the folder (or the records of the steps concerned).
"""

from __future__ import annotations

import hashlib
import json
import os
import resource
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from ..core.files import write_json_atomic


def step_key(inputs) -> str:
    """The SHA-256 of ``inputs`` as canonical JSON (sorted keys, no spaces): equal inputs, equal key."""
    text = json.dumps(inputs, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class StepCache:
    """Records of finished steps under ``folder``; ``log`` receives one progress line per step.

    >>> import tempfile
    >>> cache = StepCache(tempfile.mkdtemp(), log=lambda line: None)
    >>> cache.run("square", {"x": 3}, lambda: {"y": 9})["y"], cache.run("square", {"x": 3}, lambda: {"y": -1})["y"]
    (9, 9)
    """

    def __init__(self, folder: str | os.PathLike, total: int | None = None, log: Callable[[str], None] = print,
                 write: bool = True):
        self.folder, self.total, self.log, self.write = Path(folder), total, log, write  # write=False: only read
        self.done = 0
        self.records: dict[str, dict] = {}  # name -> {"seconds", "cpu_seconds", "cached"} of this run's steps

    def record(self, name: str) -> dict | None:
        """The stored record of ``name``, or None."""
        path = self.folder / f"{name}.json"
        return json.loads(path.read_text()) if path.is_file() else None

    def is_done(self, name: str, inputs, outputs: Iterable[str | os.PathLike] = ()) -> bool:
        """Whether ``name`` finished with these inputs and its ``outputs`` still exist."""
        stored = self.record(name)
        return stored is not None and stored["key"] == step_key(inputs) and all(Path(p).exists() for p in outputs)

    def run(self, name: str, inputs, compute: Callable[[], dict], outputs: Iterable[str | os.PathLike] = ()) -> dict:
        """``compute()``'s JSON-ready result, from the record when the step is done (see :meth:`is_done`)."""
        outputs = list(outputs)
        self.done += 1
        counter = f"[{self.done}/{self.total}]" if self.total else f"[{self.done}]"
        if self.is_done(name, inputs, outputs):
            stored = self.record(name)
            self.records[name] = {"seconds": stored["seconds"], "cpu_seconds": stored["cpu_seconds"], "cached": True}
            self.log(f"{counter} {name}: cached ({stored['seconds']:.1f} s when computed)")
            return stored["result"]
        self.log(f"{counter} {name} ...")
        wall, cpu = time.perf_counter(), _cpu_seconds()
        result = compute()
        wall, cpu = time.perf_counter() - wall, _cpu_seconds() - cpu
        if self.write:
            write_json_atomic(self.folder / f"{name}.json", {"key": step_key(inputs), "inputs": inputs, "result": result,
                                                              "seconds": wall, "cpu_seconds": cpu})
        self.records[name] = {"seconds": wall, "cpu_seconds": cpu, "cached": False}
        self.log(f"{counter} {name}: done in {wall:.1f} s ({cpu:.1f} CPU s)")
        return result
