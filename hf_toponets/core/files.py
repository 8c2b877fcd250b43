"""Atomic writes: into a temporary file or folder beside the target, then ``os.replace``.

A reader (or a crash) never sees a half-written results file, card, picture or model folder: the
temporary path is removed on failure. Used by every module that writes; pure standard library.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, folder: bool = False) -> Iterator[str]:
    """Yield a temporary file (``folder``: an empty folder) beside ``path``; on success it is renamed
    onto ``path`` (a folder replaces an empty folder only), on failure removed. Parents are created.

    >>> import tempfile, os
    >>> target = os.path.join(tempfile.mkdtemp(), "a", "x.txt")
    >>> with atomic_path(target) as tmp:
    ...     _ = open(tmp, "w").write("hi")
    >>> open(target).read()
    'hi'
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if folder:
        tmp = tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.tmp-")
    else:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(fd)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        if os.path.isdir(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
        elif os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8", newline="") as f:
        f.write(text)
    return Path(path)


def write_json_atomic(path: str | os.PathLike, data) -> Path:
    """``json.dumps(data, indent=2)`` plus a newline, written atomically."""
    return write_text_atomic(path, json.dumps(data, indent=2) + "\n")


def save_pretrained_atomic(model, output_dir: str | os.PathLike, *others) -> str:
    """``model.save_pretrained`` (and ``save_pretrained`` of each of ``others``, e.g. a tokenizer or an
    image processor; ``None`` skipped) into ``output_dir``, all or nothing. ``output_dir`` must not
    exist or be an empty folder. Returns its absolute path.
    """
    output_dir = os.path.abspath(os.fspath(output_dir))
    if os.path.exists(output_dir) and (not os.path.isdir(output_dir) or os.listdir(output_dir)):
        raise ValueError(f"output_dir {output_dir} exists and is not an empty folder; choose a new folder")
    with atomic_path(output_dir, folder=True) as tmp:
        for obj in (model, *others):
            if obj is not None:
                obj.save_pretrained(tmp)
    return output_dir
