"""Atomic file writes: a temporary file in the same folder, then ``os.replace``.

A reader (or a crash) never sees a half-written results file, card or metadata. Used by every
module that writes JSON or text; pure standard library.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically; the temporary file is removed on failure."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
    return path


def write_json_atomic(path: str | os.PathLike, data) -> Path:
    """``json.dumps(data, indent=2)`` plus a newline, written atomically."""
    return write_text_atomic(path, json.dumps(data, indent=2) + "\n")
