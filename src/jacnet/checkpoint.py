"""Atomic, pickle-free files: checkpoints of training state.

A checkpoint is an ``.npz`` archive of plain arrays plus one JSON document stored as
bytes; it is read with ``allow_pickle=False``, so loading never runs code.
"""

from __future__ import annotations

import json
import os
import stat
import tempfile
import threading
import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["atomic_write", "save_checkpoint", "load_checkpoint", "CHECKPOINT_FORMAT"]

CHECKPOINT_FORMAT = "jacnet-checkpoint-1"
_META = "__meta__"


def atomic_write(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename.

    A reader sees the old file or the new one, never a partial one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        # mkstemp creates the file private (0600); give it the mode a plain open() would:
        # the replaced file's, or 0666 less the umask for a new one.
        os.fchmod(fd, _mode_for(path))
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


_UMASK_LOCK = threading.Lock()


def _mode_for(path: Path) -> int:
    """The permission bits a file written at ``path`` should get."""
    try:
        return stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        with _UMASK_LOCK:  # the umask can only be read by setting it
            umask = os.umask(0o022)
            os.umask(umask)
        return 0o666 & ~umask


def save_checkpoint(path: str | os.PathLike[str], arrays: dict[str, np.ndarray],
                    meta: dict[str, Any]) -> None:
    """Save named arrays and a JSON-serialisable ``meta`` dict atomically."""
    import io

    if _META in arrays:
        raise ValueError(f"array name {_META!r} is reserved")
    buf = io.BytesIO()
    doc = json.dumps({"format": CHECKPOINT_FORMAT, **meta}).encode()
    payload = {**arrays, _META: np.frombuffer(doc, dtype=np.uint8)}
    np.savez(buf, **payload)  # type: ignore[arg-type]
    atomic_write(path, buf.getvalue())


def load_checkpoint(path: str | os.PathLike[str]) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Load ``(arrays, meta)`` saved by :func:`save_checkpoint`; a clear error otherwise."""
    try:
        z = np.load(path, allow_pickle=False)
        if not isinstance(z, np.lib.npyio.NpzFile):  # a lone .npy array
            raise ValueError(f"an .npy array of shape {np.shape(z)}, not an .npz archive")
        with z:
            arrays = {k: z[k] for k in z.files}
    except FileNotFoundError:
        raise FileNotFoundError(f"checkpoint file not found: {path}") from None
    # A corrupted zip header can claim any version, compression or encryption flag.
    except (OSError, ValueError, EOFError, NotImplementedError, RuntimeError,
            zipfile.BadZipFile, zlib.error) as exc:
        raise ValueError(f"{path} is not a readable jacnet checkpoint: {exc}") from None
    raw = arrays.pop(_META, None)
    try:
        meta = json.loads(bytes(raw).decode()) if raw is not None else None
    except (UnicodeDecodeError, json.JSONDecodeError):
        meta = None
    if not isinstance(meta, dict) or meta.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not a jacnet checkpoint (format {CHECKPOINT_FORMAT})")
    return arrays, meta
