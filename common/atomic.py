"""Write files so that a crash or Ctrl-C never leaves half a file behind.

Each writer gets a temporary name of its own in the destination folder (two runs writing the
same file never share one) and the file is renamed into place only after it was written
completely (`os.replace` is atomic on one filesystem).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from pathlib import Path


@contextlib.contextmanager
def atomic_path(path: str | Path):
    """Yield a temporary path beside `path`, unique to this call and ending like `path`
    (Keras checks `.keras` and `.weights.h5`); rename it to `path` on success. The folder is
    made if needed: an output folder appears with its first file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ending = "".join(path.suffixes[-2:]) if path.name.endswith(".weights.h5") else path.suffix
    stem = path.name[: len(path.name) - len(ending)]
    tmp = path.with_name(f".{stem}.{os.getpid()}-{secrets.token_hex(4)}.partial{ending}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_json(path: str | Path, obj) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=False, default=_plain) + "\n")
    return Path(path)


def write_text(path: str | Path, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def save_model(model, path: str | Path) -> Path:
    """`model.save` to a `.keras` file, atomically."""
    with atomic_path(path) as tmp:
        model.save(tmp)
    return Path(path)


def _plain(value):
    """JSON fallback for numpy scalars and arrays."""
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"cannot write {type(value).__name__} to JSON")
