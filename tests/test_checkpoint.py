"""Tests of jacnet.checkpoint: atomic writes, pickle-free files, clear errors on bad files."""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest

import jacnet as jn
from jacnet import checkpoint
from jacnet.checkpoint import CHECKPOINT_FORMAT, atomic_write, load_checkpoint, save_checkpoint


def sample_arrays() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "theta": rng.normal(size=40),
        "opt.m.0": rng.normal(size=40).astype(np.float32),
        "opt.step": np.array(7, dtype=np.int64),
        "division": np.arange(12).reshape(3, 4),
    }


META = {"record": {"epochs": [{"epoch": 1, "loss": 0.5, "val_loss": None}]}, "mu": 1e-3,
        "rng": {"bit_generator": "PCG64", "state": {"state": 2**100 + 3, "inc": 5}}}


def write_valid(path: Path) -> bytes:
    save_checkpoint(path, sample_arrays(), META)
    return path.read_bytes()


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def assert_one_line_value_error(path: Path) -> None:
    with pytest.raises(ValueError) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert "\n" not in message and str(path) in message


# ----------------------------------------------------------------------- round trip
def test_checkpoint_round_trip_keeps_arrays_dtypes_and_meta(tmp_path):
    path = tmp_path / "ck.npz"
    save_checkpoint(path, sample_arrays(), META)
    arrays, meta = load_checkpoint(path)
    expected = sample_arrays()
    assert set(arrays) == set(expected)
    for key, value in expected.items():
        assert arrays[key].dtype == value.dtype and arrays[key].shape == value.shape
        np.testing.assert_array_equal(arrays[key], value)
    assert meta == {"format": CHECKPOINT_FORMAT, **META}
    assert meta["rng"]["state"]["state"] == 2**100 + 3  # big ints survive exactly


def test_checkpoint_is_readable_without_pickle(tmp_path):
    path = tmp_path / "ck.npz"
    write_valid(path)
    with np.load(path, allow_pickle=False) as z:
        assert all(z[k].dtype != object for k in z.files)
        doc = json.loads(bytes(z["__meta__"]).decode())
    assert doc["format"] == CHECKPOINT_FORMAT
    with zipfile.ZipFile(path) as zf:
        assert all(name.endswith(".npy") for name in zf.namelist())


def test_checkpoint_written_by_train_is_pickle_free(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(30, 2))
    T = X.sum(1, keepdims=True)
    net = jn.Network([jn.Dense(2, 3, "tanh"), jn.Dense(3, 1)], seed=0)
    path = tmp_path / "ck.npz"
    jn.train(net, X, T, solver="adam", max_epochs=4, checkpoint=str(path), checkpoint_every=2,
             validation_fraction=0.2, seed=0)
    with np.load(path, allow_pickle=False) as z:
        names = set(z.files)
        assert all(z[k].dtype != object for k in z.files)
    assert "theta" in names and any(name.startswith("opt.") for name in names)
    arrays, meta = load_checkpoint(path)
    assert len(meta["record"]["epochs"]) == 4
    assert arrays["theta"].shape == (net.n_params,)


def test_checkpoint_refuses_the_reserved_name(tmp_path):
    with pytest.raises(ValueError, match="__meta__"):
        save_checkpoint(tmp_path / "ck.npz", {"__meta__": np.zeros(1)}, {})
    assert not list(tmp_path.iterdir())


# --------------------------------------------------------------------------- atomic
def test_checkpoint_save_leaves_no_temporary_file(tmp_path):
    for _ in range(3):
        write_valid(tmp_path / "ck.npz")
    assert leftovers(tmp_path) == [] and [p.name for p in tmp_path.iterdir()] == ["ck.npz"]


def test_checkpoint_replaces_an_existing_file_whole(tmp_path):
    path = tmp_path / "ck.npz"
    save_checkpoint(path, {"theta": np.arange(10_000.0)}, {"which": "big"})
    big = path.stat().st_size
    save_checkpoint(path, {"theta": np.arange(3.0)}, {"which": "small"})
    arrays, meta = load_checkpoint(path)
    assert meta["which"] == "small" and arrays["theta"].tolist() == [0.0, 1.0, 2.0]
    assert path.stat().st_size < big / 10  # not the old file's tail after the new one


def test_checkpoint_failed_write_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "ck.npz"
    old = write_valid(path)

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(checkpoint.os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, {"theta": np.zeros(3)}, {"which": "new"})
    assert path.read_bytes() == old and leftovers(tmp_path) == []


def test_checkpoint_unserialisable_meta_keeps_the_old_file(tmp_path):
    path = tmp_path / "ck.npz"
    old = write_valid(path)
    with pytest.raises(TypeError):
        save_checkpoint(path, {"theta": np.zeros(3)}, {"bad": object()})
    assert path.read_bytes() == old and leftovers(tmp_path) == []


def test_atomic_write_creates_missing_folders(tmp_path):
    path = tmp_path / "a" / "b" / "file.bin"
    atomic_write(path, b"xyz")
    assert path.read_bytes() == b"xyz" and leftovers(path.parent) == []


def test_atomic_write_writes_through_a_symbolic_link(tmp_path):
    """As open() does: the link's target gets the data and the link stays a link (a
    rename onto the link would turn it into a regular file and leave the target old)."""
    (tmp_path / "store").mkdir()
    target = tmp_path / "store" / "model.safetensors"
    target.write_bytes(b"old")
    link = tmp_path / "model.safetensors"
    link.symlink_to(Path("store") / "model.safetensors")  # relative, as users make them
    atomic_write(link, b"new")
    assert link.is_symlink() and target.read_bytes() == b"new"
    assert leftovers(tmp_path) == [] and leftovers(target.parent) == []
    dangling = tmp_path / "later.bin"
    dangling.symlink_to(tmp_path / "store" / "made_now.bin")
    atomic_write(dangling, b"x")
    assert dangling.is_symlink() and (tmp_path / "store" / "made_now.bin").read_bytes() == b"x"


def test_atomic_write_leaves_a_read_only_file_as_it_was(unprivileged):
    """A rename needs only the folder's permission; the file's own read-only mode must
    still stop the write, as it stops open(). The folder is writable by all, so only the
    file's mode can refuse."""
    def write(path: Path) -> int:
        try:
            atomic_write(path, b"new")
        except PermissionError as e:
            return 13 if str(path) in str(e) and "left as it was" in str(e) else 2
        return 0

    kept = unprivileged.folder / "model.safetensors"
    kept.write_bytes(b"keep me")
    kept.chmod(0o444)
    assert unprivileged.run(lambda: write(kept)) == 13
    assert kept.read_bytes() == b"keep me" and leftovers(unprivileged.folder) == []
    free = unprivileged.folder / "other.bin"
    free.write_bytes(b"old")
    free.chmod(0o666)
    assert unprivileged.run(lambda: write(free)) == 0 and free.read_bytes() == b"new"


def test_atomic_write_takes_a_name_at_the_file_system_limit(tmp_path):
    """A 250-byte name is valid; its temporary file's name must be too."""
    for name in ("m" * 250, "é" * 125):  # 250 bytes, in one- and two-byte characters
        path = tmp_path / name
        atomic_write(path, b"abc")
        assert path.read_bytes() == b"abc" and leftovers(tmp_path) == []
        path.unlink()


# ----------------------------------------------------------------------- bad files
@pytest.mark.parametrize("fraction", [0.0, 0.1, 0.5, 0.9, 0.99])
def test_checkpoint_truncated_file_raises_value_error(tmp_path, fraction):
    path = tmp_path / "ck.npz"
    data = write_valid(path)
    path.write_bytes(data[: int(len(data) * fraction)])
    assert_one_line_value_error(path)


def test_checkpoint_corrupted_payload_raises_value_error(tmp_path):
    path = tmp_path / "ck.npz"
    data = write_valid(path)
    start = data.index(sample_arrays()["theta"].tobytes()[:16])  # inside theta's data
    for offset in (0, 100, 300):
        corrupt = bytearray(data)
        corrupt[start + offset] ^= 0xFF
        path.write_bytes(bytes(corrupt))
        assert_one_line_value_error(path)


def test_checkpoint_random_damage_raises_value_error_or_loads_intact(tmp_path):
    # Any damage either gives a one-line ValueError or, where it hit a field the reader
    # ignores (a timestamp), the original content: never other errors, never wrong arrays.
    path = tmp_path / "ck.npz"
    data = write_valid(path)
    rng = np.random.default_rng(1)
    expected = sample_arrays()
    for _ in range(300):
        corrupt = bytearray(data)
        pos = int(rng.integers(len(data)))
        corrupt[pos : pos + 4] = rng.bytes(4)
        path.write_bytes(bytes(corrupt))
        try:
            arrays, meta = load_checkpoint(path)
        except ValueError as exc:
            assert "\n" not in str(exc)
            continue
        assert meta == {"format": CHECKPOINT_FORMAT, **META}
        assert set(arrays) == set(expected)
        for key, value in expected.items():
            np.testing.assert_array_equal(arrays[key], value)


def foreign_files(folder: Path) -> dict[str, Path]:
    files = {}
    files["empty"] = folder / "empty.npz"
    files["empty"].write_bytes(b"")
    files["text"] = folder / "notes.npz"
    files["text"].write_text("theta = 1, 2, 3\n")
    files["json"] = folder / "meta.npz"
    files["json"].write_text(json.dumps({"format": CHECKPOINT_FORMAT}))
    files["npy"] = folder / "array.npz"
    with open(files["npy"], "wb") as f:
        np.save(f, np.arange(5.0))
    files["plain npz"] = folder / "plain.npz"
    np.savez(files["plain npz"], theta=np.arange(3.0))
    files["other format"] = folder / "other.npz"
    doc = json.dumps({"format": "someone-else-1"}).encode()
    np.savez(files["other format"], theta=np.zeros(2), __meta__=np.frombuffer(doc, np.uint8))
    files["meta not json"] = folder / "garbled.npz"
    np.savez(files["meta not json"], __meta__=np.frombuffer(b"\xff\xfe{", np.uint8))
    files["meta a list"] = folder / "list.npz"
    np.savez(files["meta a list"], __meta__=np.frombuffer(b"[1, 2]", np.uint8))
    files["pickled object"] = folder / "pickle.npz"
    np.savez(files["pickled object"], theta=np.array([{"a": 1}], dtype=object),
             __meta__=np.frombuffer(json.dumps({"format": CHECKPOINT_FORMAT}).encode(),
                                    np.uint8))
    files["zip of text"] = folder / "zip.npz"
    with zipfile.ZipFile(files["zip of text"], "w") as zf:
        zf.writestr("readme.txt", "hello")
    files["folder"] = folder / "dir.npz"
    files["folder"].mkdir()
    return files


def test_checkpoint_foreign_files_raise_value_error(tmp_path):
    for name, path in foreign_files(tmp_path).items():
        with pytest.raises(ValueError) as info:
            load_checkpoint(path)
        assert "\n" not in str(info.value), name
        assert str(path) in str(info.value), name


def test_checkpoint_missing_file_raises_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.npz"):
        load_checkpoint(tmp_path / "missing.npz")


def test_train_resume_from_a_bad_file_raises_before_any_work(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(20, 2))
    T = X.sum(1, keepdims=True)
    net = jn.Network([jn.Dense(2, 1)], seed=0)
    theta0 = net.get_flat()
    bad = tmp_path / "ck.npz"
    content = b"PK\x03\x04 not really a zip"
    bad.write_bytes(content)
    with pytest.raises(ValueError, match="checkpoint"):
        jn.train(net, X, T, solver="lm", resume=str(bad))
    np.testing.assert_array_equal(net.theta, theta0)
    assert bad.read_bytes() == content  # the bad file is left as it was


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_atomic_write_gives_open_s_mode_without_touching_the_umask(tmp_path, monkeypatch, umask):
    """A new file gets 0666 less the umask (mkstemp's 0600 would make every file
    private); a replaced one keeps its mode. The umask is never set: setting it to read it
    would change it for a moment for every thread of the process."""
    old = os.umask(umask)
    try:
        def no_umask(mask):
            raise AssertionError("atomic_write must not set the umask")

        monkeypatch.setattr(checkpoint.os, "umask", no_umask)
        atomic_write(tmp_path / "new.bin", b"x")
        assert (tmp_path / "new.bin").stat().st_mode & 0o777 == 0o666 & ~umask
        (tmp_path / "new.bin").chmod(0o600 if umask == 0o022 else 0o644)
        kept = (tmp_path / "new.bin").stat().st_mode & 0o777
        atomic_write(tmp_path / "new.bin", b"y")
        assert (tmp_path / "new.bin").stat().st_mode & 0o777 == kept
        assert (tmp_path / "new.bin").read_bytes() == b"y" and leftovers(tmp_path) == []
    finally:
        monkeypatch.undo()
        os.umask(old)


def test_run_state_round_trips_through_a_checkpoint(tmp_path):
    from jacnet.checkpoint import RunState, load_run, save_run
    from jacnet.record import TrainingRecord

    rng = np.random.default_rng(3)
    record = TrainingRecord(solver="adam", epochs=[{"epoch": 1, "loss": 0.5}],
                            division={"train": np.arange(4)})
    state = RunState(theta=rng.normal(size=5), record=record,
                     rng=dict(rng.bit_generator.state), best_theta=rng.normal(size=5),
                     best_score=0.25, solver_arrays={"opt.step": np.array(3)},
                     solver_meta={"lr_scale": 0.5}, rules={"ValidationFail": {"best": 0.25,
                                                                             "fails": 2}},
                     validation_data_rows=7)
    save_run(tmp_path / "ck.npz", state)
    back = load_run(tmp_path / "ck.npz")
    np.testing.assert_array_equal(back.theta, state.theta)
    np.testing.assert_array_equal(back.best_theta, state.best_theta)
    assert back.record.to_dict() == record.to_dict() and back.rng == state.rng
    assert back.solver_arrays == {"opt.step": np.array(3)}
    assert (back.solver_meta, back.rules, back.best_score, back.validation_data_rows) == (
        state.solver_meta, state.rules, 0.25, 7)
    with pytest.raises(ValueError, match="reserved"):
        save_run(tmp_path / "x.npz", RunState(theta=state.theta, record=record, rng={},
                                              solver_arrays={"theta": state.theta}))


def test_check_resume_names_what_differs():
    from jacnet.checkpoint import RunState, check_resume
    from jacnet.record import TrainingRecord

    record = TrainingRecord(solver="lm", division={"train": np.arange(8),
                                                   "validation": np.arange(8, 10)})
    state = RunState(theta=np.zeros(3), record=record, rng={}, validation_data_rows=None)
    check_resume(state, "lm", 10, None)
    with pytest.raises(ValueError, match="of solver 'lm', not 'adam'"):
        check_resume(state, "adam", 10, None)
    with pytest.raises(ValueError, match="divided 10 rows .* has 9"):
        check_resume(state, "lm", 9, None)
    with pytest.raises(ValueError, match="had no validation_data"):
        check_resume(state, "lm", 10, 5)
