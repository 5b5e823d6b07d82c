"""Atomic, pickle-free files: checkpoints of training state, and resuming from them.

A checkpoint is an ``.npz`` archive of plain arrays plus one JSON document stored as
bytes; it is read with ``allow_pickle=False``, so loading never runs code. A training
run's checkpoint is a :class:`RunState` (weights, best weights, random generator, record,
the solver's state and the stop rules' counters); :func:`check_resume` holds the checks
that a resume is of the run the checkpoint was written by.
"""

from __future__ import annotations

import errno
import json
import os
import secrets
import stat
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .record import TrainingRecord

__all__ = [
    "atomic_write",
    "save_checkpoint",
    "load_checkpoint",
    "CHECKPOINT_FORMAT",
    "RunState",
    "save_run",
    "load_run",
    "check_resume",
]

CHECKPOINT_FORMAT = "jacnet-checkpoint-1"
_EFFECTIVE_IDS = os.access in os.supports_effective_ids
_META = "__meta__"


def atomic_write(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename.

    A reader sees the old file or the new one, never a partial one. As with ``open()``,
    a symbolic link is written through (its target gets the data and the link stays), and
    a file this process may not write raises ``PermissionError`` and is left as it was.
    """
    # The rename must replace the file the link points to, not the link (which would
    # become a regular file and leave its target as it was); in the target's folder, so
    # that the temporary file and the target share a file system.
    path = Path(os.path.realpath(path))
    # A rename needs only the folder's permission: without this test a file made
    # read-only to keep it would be replaced all the same.
    if not may_write(path):
        raise PermissionError(errno.EACCES, "no permission to write this file (it is left "
                              "as it was); make it writable or write elsewhere", str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _temporary(path)
    try:
        try:  # a replaced file keeps its mode (a new one has open()'s, 0666 less the umask)
            os.fchmod(fd, stat.S_IMODE(path.stat().st_mode))
        except FileNotFoundError:
            pass
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def may_write(path: str | os.PathLike[str]) -> bool:
    """Whether this process may write ``path`` (True for a path that does not exist yet;
    the effective user's rights where the platform can test them, as ``open()`` uses)."""
    return not os.path.exists(path) or os.access(path, os.W_OK, effective_ids=_EFFECTIVE_IDS)


def _temporary(path: Path) -> tuple[int, str]:
    """A new, exclusively created file next to ``path``: ``(descriptor, name)``.

    Not ``tempfile.mkstemp``: that creates it 0600, so every file written would end up
    private. Here the kernel applies the umask to 0666 as for any ``open()``, with no
    process-wide umask read (setting it to read it would race with other threads).
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    # At most 64 bytes of the name: a name near the file system's limit (255 bytes) plus
    # the 18 characters around it would not be a valid name.
    stem = os.fsencode(path.name)[:64].decode(errors="ignore")
    for _ in range(100):
        tmp = path.parent / f".{stem}.{secrets.token_hex(6)}.tmp"
        try:
            return os.open(tmp, flags, 0o666), str(tmp)
        except FileExistsError:
            continue
    raise FileExistsError(f"cannot create a temporary file next to {path}")


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


# ----------------------------------------------------------------- training runs
_RUN_ARRAYS = ("theta", "best_theta")  # a run's own arrays; the others are the solver's


@dataclass
class RunState:
    """Everything a training run needs to continue bit for bit.

    Attributes
    ----------
    theta : ndarray of shape (P,)
        The weights at the end of the last recorded epoch.
    record : TrainingRecord
    rng : dict
        The state of the run's ``numpy.random.Generator`` (``bit_generator.state``).
    best_theta : ndarray of shape (P,) or None
        The weights of the best validation loss so far (restored at the end).
    best_score : float
        The score of those weights.
    solver_arrays, solver_meta : dict
        ``Solver.get_state()``: the optimizer's moments and schedule, or LM's ``mu``.
    rules : dict of str to dict
        ``get_state()`` of each stop rule that has counters, by the rule's class name.
    validation_data_rows : int or None
        Rows of the explicit ``validation_data`` the run had (None: none).
    settings : dict
        The run's settings, for the reader of the file (not read back).
    """

    theta: np.ndarray
    record: TrainingRecord
    rng: dict[str, Any]
    best_theta: np.ndarray | None = None
    best_score: float = float("inf")
    solver_arrays: dict[str, np.ndarray] = field(default_factory=dict)
    solver_meta: dict[str, Any] = field(default_factory=dict)
    rules: dict[str, dict[str, Any]] = field(default_factory=dict)
    validation_data_rows: int | None = None
    settings: dict[str, Any] = field(default_factory=dict)


def save_run(path: str | os.PathLike[str], state: RunState) -> None:
    """Write ``state`` as a checkpoint (atomically)."""
    taken = set(_RUN_ARRAYS) & set(state.solver_arrays)
    if taken:
        raise ValueError(f"solver array names {sorted(taken)} are reserved for the run")
    arrays = {"theta": state.theta, **state.solver_arrays}
    if state.best_theta is not None:
        arrays["best_theta"] = state.best_theta
    meta = {"record": state.record.to_dict(), "rng": state.rng, "best_score": state.best_score,
            "solver": state.solver_meta, "rules": state.rules,
            "validation_data_rows": state.validation_data_rows, "settings": state.settings}
    save_checkpoint(path, arrays, meta)


def load_run(path: str | os.PathLike[str]) -> RunState:
    """Read a checkpoint written by :func:`save_run` (KeyError when a part is missing)."""
    arrays, meta = load_checkpoint(path)
    return RunState(
        theta=arrays["theta"], record=TrainingRecord.from_dict(meta["record"]),
        rng=meta["rng"], best_theta=arrays.get("best_theta"), best_score=meta["best_score"],
        solver_arrays={k: v for k, v in arrays.items() if k not in _RUN_ARRAYS},
        solver_meta=meta["solver"], rules=meta["rules"],
        validation_data_rows=meta["validation_data_rows"], settings=meta.get("settings", {}),
    )


def check_resume(state: RunState, solver: str, n_rows: int, validation_rows: int | None
                 ) -> None:
    """Refuse (ValueError) a resume that is not of the run ``state`` was saved from.

    The same solver, the data it divided (``n_rows`` rows), and the explicit validation
    set it had (``validation_rows``; None: none). Without its validation set, a run's
    validation failures would count as training-loss stalls, and its best weights would
    be compared with scores of other data.
    """
    record = state.record
    if record.solver != solver:
        raise ValueError(f"resume: the checkpoint is of solver {record.solver!r}, not {solver!r}")
    division = record.division
    n_div = sum(len(idx) for idx in division.values())
    if n_div != n_rows or any(len(i) and i.max() >= n_rows for i in division.values()):
        raise ValueError(f"resume: the checkpoint divided {n_div} rows into its sets, the "
                         f"data has {n_rows}: resume on the data it was trained on")
    was = state.validation_data_rows
    if was != validation_rows:
        given = "none" if validation_rows is None else f"{validation_rows} rows"
        if was is None:
            raise ValueError("resume: the checkpoint's run had no validation_data; resume it "
                             f"without one (got {given})")
        raise ValueError(f"resume: the checkpoint's run had validation_data of {was} rows; "
                         f"pass the same validation_data again (got {given})")
