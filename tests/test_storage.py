"""`target/` storage: atomic writes that fail cleanly, damaged files detected, names that cannot
escape, pointer files of every version readable."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest

from seeknal_dagster import storage
from seeknal_dagster.errors import SeeknalError, StateError
from seeknal_dagster.storage import (
    PROD,
    CorruptStateError,
    EnvState,
    Pointer,
    Store,
    TargetWriteError,
    atomic_write_bytes,
    file_checksum,
    read_json,
    validate_env_name,
)


def snapshot(store: Store, node_id: str, data: bytes = b"PAR1 some rows PAR1") -> Pointer:
    """Writes a snapshot file for `node_id` and returns a pointer to it (as a step would)."""
    path = store.snapshot_path(node_id, "f" * 24)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return Pointer(
        fingerprint="f" * 24,
        snapshot=path.relative_to(store.target).as_posix(),
        rows=3,
        bytes=len(data),
        checksum=file_checksum(path),
        columns=(("id", "BIGINT"),),
        built_at="2026-01-01T00:00:00Z",
    )


def recorded(tmp_path: Path, node_id: str = "transform.t") -> tuple[Store, Pointer]:
    store = Store(tmp_path / "target")
    store.record_outputs(PROD, {node_id: snapshot(store, node_id)})
    return store, store.read_state(PROD).pointers[node_id]


def files_under(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()
    }


# --- atomic writes ------------------------------------------------------------------------------


def test_atomic_write_disk_full_keeps_old_file_and_names_path(tmp_path, monkeypatch) -> None:
    path = tmp_path / "state" / "prod.json"
    atomic_write_bytes(path, b"old")

    def full(*args: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(storage.os, "fsync", full)
    with pytest.raises(TargetWriteError) as raised:
        atomic_write_bytes(path, b"new")

    assert str(path) in str(raised.value) and "No space left on device" in str(raised.value)
    assert "free disk space" in str(raised.value)
    assert isinstance(raised.value, SeeknalError) and isinstance(raised.value, OSError)
    assert raised.value.errno == errno.ENOSPC
    assert path.read_bytes() == b"old"
    assert [p.name for p in path.parent.iterdir()] == ["prod.json"]


def test_atomic_write_replace_failing_leaves_no_temp_file(tmp_path, monkeypatch) -> None:
    path = tmp_path / "plan.json"

    def refused(*args: object) -> None:
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(storage.os, "replace", refused)
    with pytest.raises(TargetWriteError, match="make target/ writable"):
        atomic_write_bytes(path, b"{}")

    assert list(tmp_path.iterdir()) == []


def test_atomic_write_under_a_file_names_the_file(tmp_path) -> None:
    (tmp_path / "target").write_text("not a folder")

    with pytest.raises(TargetWriteError) as raised:
        atomic_write_bytes(tmp_path / "target" / "state" / "prod.json", b"{}")

    assert f"{tmp_path / 'target'} is a file, not a folder" in str(raised.value)
    assert (tmp_path / "target").read_text() == "not a folder"


def test_hash_cache_still_tolerates_a_failed_write(tmp_path) -> None:
    from seeknal_dagster.manifest import FileHashes

    (tmp_path / "target").write_text("not a folder")
    data = tmp_path / "data.csv"
    data.write_text("id\n1\n")
    hashes = FileHashes(tmp_path / "target")

    hashes.hash(data)
    hashes.save()  # an OSError subclass: the cache is only a cache

    assert (tmp_path / "target").read_text() == "not a folder"


# --- locks ---------------------------------------------------------------------------------------


def test_lock_on_a_file_target_is_a_clear_error(tmp_path) -> None:
    (tmp_path / "target").write_text("x")
    store = Store(tmp_path / "target")

    with pytest.raises(TargetWriteError, match="cannot create the lock file"):
        with store.environment_lock(PROD, "seeknal run"):
            pass


@pytest.mark.parametrize("name", ["../outside", "a/b", "..", "", "Dev", "x;rm", "a'b"])
def test_lock_refuses_names_that_could_escape(tmp_path, name: str) -> None:
    store = Store(tmp_path / "target")

    with pytest.raises(StateError, match="invalid environment name"):
        with store.environment_lock(name, "seeknal promote"):
            pass
    with pytest.raises(StateError, match="invalid environment name"):
        store.history_dir(name)

    assert list(tmp_path.iterdir()) == []


# --- environment names --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    ["", "-dev", "_dev", "Dev", "dev env", "../prod", "dev/x", "dev.x", "dev;", "a" * 64, "dév"],
)
def test_validate_env_name_rejects(name: str) -> None:
    with pytest.raises(StateError) as raised:
        validate_env_name(name)

    assert "invalid environment name" in str(raised.value) and "lower-case" in str(raised.value)


@pytest.mark.parametrize("name", ["dev", "feature-x", "a", "x_1", "9", "a" * 63])
def test_validate_env_name_accepts(name: str) -> None:
    assert validate_env_name(name) == name


# --- snapshots: intact, truncated, overwritten ---------------------------------------------------


def test_record_outputs_stamps_mtime_and_links(tmp_path) -> None:
    store, pointer = recorded(tmp_path)
    path = store.target / pointer.snapshot

    assert pointer.mtime_ns == path.stat().st_mtime_ns
    link = store.cache_path(PROD, "transform.t")
    assert link.is_symlink() and link.resolve() == path.resolve()


def test_is_current_unchanged_snapshot_is_trusted_without_reading(tmp_path, monkeypatch) -> None:
    store, pointer = recorded(tmp_path)

    def unread(path: Path) -> str:
        raise AssertionError("an unchanged snapshot must not be re-hashed")

    monkeypatch.setattr(storage, "file_checksum", unread)

    assert store.is_current(pointer, pointer.fingerprint)
    assert not store.is_current(pointer, "another fingerprint")


def test_is_current_same_size_flipped_bytes_is_rebuilt(tmp_path) -> None:
    store, pointer = recorded(tmp_path)
    path = store.target / pointer.snapshot
    data = bytearray(path.read_bytes())
    data[5] ^= 0xFF
    path.write_bytes(bytes(data))
    os.utime(path, ns=(pointer.mtime_ns + 1_000_000, pointer.mtime_ns + 1_000_000))

    assert path.stat().st_size == pointer.bytes
    assert not store.is_current(pointer, pointer.fingerprint)


def test_is_current_truncated_snapshot_is_rebuilt(tmp_path) -> None:
    store, pointer = recorded(tmp_path)
    path = store.target / pointer.snapshot
    path.write_bytes(path.read_bytes()[:-3])

    assert not store.is_current(pointer, pointer.fingerprint)


def test_is_current_missing_snapshot_is_rebuilt(tmp_path) -> None:
    store, pointer = recorded(tmp_path)
    (store.target / pointer.snapshot).unlink()

    assert not store.is_current(pointer, pointer.fingerprint)


def test_is_current_touched_but_intact_snapshot_is_kept(tmp_path) -> None:
    store, pointer = recorded(tmp_path)
    path = store.target / pointer.snapshot
    os.utime(path, ns=(1, 1))  # e.g. copied without preserving times

    assert store.is_current(pointer, pointer.fingerprint)


def test_pointer_file_without_mtime_reads_and_verifies_by_checksum(tmp_path) -> None:
    store, pointer = recorded(tmp_path)
    path = store.state_path(PROD)
    document = json.loads(path.read_text())
    del document["nodes"]["transform.t"]["mtime_ns"]
    path.write_text(json.dumps(document))

    old = store.read_state(PROD).pointers["transform.t"]

    assert old.mtime_ns is None and old.checksum == pointer.checksum
    assert store.is_current(old, pointer.fingerprint)
    snapshot_file = store.target / pointer.snapshot
    snapshot_file.write_bytes(snapshot_file.read_bytes().replace(b"rows", b"ROWS"))
    storage._VERIFIED.clear()
    assert not store.is_current(old, pointer.fingerprint)


# --- pointer files: damaged, tampered, recovered --------------------------------------------------


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "not a JSON object"),
        ('{"schema_version": 1, "version": 1}', "missing or bad field"),
        ('{"schema_version": 1, "version": 1, "nodes": {"a.b": {"snapshot": "x"}}}', "bad field"),
        ('{"schema_version": 1, "version": "x", "nodes": {}}', "bad field"),
        ("", "not valid JSON"),
    ],
)
def test_read_state_damaged_pointer_file(tmp_path, content: str, problem: str) -> None:
    store = Store(tmp_path / "target")
    path = store.state_path(PROD)
    path.parent.mkdir(parents=True)
    path.write_text(content)

    with pytest.raises(CorruptStateError) as raised:
        store.read_state(PROD)

    message = str(raised.value)
    assert str(path) in message and problem in message
    assert "seeknal run --full" in message and f"mv {path}" in message
    assert path.read_text() == content


@pytest.mark.parametrize("snapshot_path", ["../../etc/passwd", "/etc/passwd", ""])
def test_read_state_refuses_snapshot_outside_target(tmp_path, snapshot_path: str) -> None:
    store, pointer = recorded(tmp_path)
    path = store.state_path(PROD)
    document = json.loads(path.read_text())
    document["nodes"]["transform.t"]["snapshot"] = snapshot_path
    path.write_text(json.dumps(document))

    with pytest.raises(CorruptStateError, match="not a path inside target/"):
        store.read_state(PROD)


def test_read_state_recover_sets_damaged_file_aside(tmp_path) -> None:
    store = Store(tmp_path / "target")
    path = store.state_path(PROD)
    path.parent.mkdir(parents=True)
    path.write_text("{truncated")

    state = store.read_state(PROD, recover=True)

    assert state.pointers == {} and state.version == 0
    assert not path.exists()
    (aside,) = path.parent.glob("prod.json.damaged-*")
    assert aside.read_text() == "{truncated"
    store.write_state(state)
    assert store.read_state(PROD).version == 1


def test_read_state_recover_keeps_a_file_of_another_version(tmp_path) -> None:
    store = Store(tmp_path / "target")
    path = store.state_path(PROD)
    path.parent.mkdir(parents=True)
    path.write_text('{"schema_version": 99, "nodes": {}}')

    with pytest.raises(StateError, match="schema_version 99"):
        store.read_state(PROD, recover=True)

    assert path.exists()


@pytest.mark.parametrize(
    ("relative", "advice"),
    [
        ("environments/dev/plan.json", "seeknal env delete dev`, then `seeknal plan dev"),
        ("environments/dev/env_config.json", "seeknal env delete dev"),
        ("environments/dev/state.json", "seeknal env delete dev"),
        ("state/history/prod/00000003.json", "only that rollback point is lost"),
        ("manifest.json", "`seeknal plan` writes it again"),
        ("state/prod.json", "seeknal run --full"),
    ],
)
def test_read_json_damaged_file_advice_fits_the_file(tmp_path, relative: str, advice: str) -> None:
    path = tmp_path / "target" / relative
    path.parent.mkdir(parents=True)
    path.write_bytes(b"\x00\xff garbage")

    with pytest.raises(CorruptStateError) as raised:
        read_json(path, "state file")

    assert str(path) in str(raised.value) and advice in str(raised.value)


def test_read_state_of_unreadable_target_names_the_file(tmp_path) -> None:
    (tmp_path / "target").write_text("x")

    with pytest.raises(StateError) as raised:
        Store(tmp_path / "target").read_state(PROD)

    assert "is a file, not a folder" in str(raised.value)


# --- writes that fail leave the environment as it was -------------------------------------------


def test_record_outputs_disk_full_leaves_pointers_and_links(tmp_path, monkeypatch) -> None:
    store, before = recorded(tmp_path)
    state_before = store.state_path(PROD).read_bytes()
    link = store.cache_path(PROD, "transform.t")
    link_before = os.readlink(link)
    newer = snapshot(store, "transform.u")
    real_replace = os.replace

    def full(source: object, destination: object) -> None:
        if Path(str(destination)).name == "prod.json":
            raise OSError(errno.ENOSPC, "No space left on device")
        real_replace(source, destination)

    monkeypatch.setattr(storage.os, "replace", full)
    with pytest.raises(TargetWriteError, match="No space left on device"):
        store.record_outputs(PROD, {"transform.u": newer})

    assert store.state_path(PROD).read_bytes() == state_before
    assert os.readlink(link) == link_before
    assert not store.cache_path(PROD, "transform.u").exists()


def test_repair_links_relinks_a_missing_link(tmp_path) -> None:
    store, pointer = recorded(tmp_path)
    link = store.cache_path(PROD, "transform.t")
    link.unlink()

    assert store.repair_links(PROD) == 1
    assert link.resolve() == (store.target / pointer.snapshot).resolve()


def test_repair_links_relinks_a_stale_link(tmp_path) -> None:
    store, pointer = recorded(tmp_path)
    link = store.cache_path(PROD, "transform.t")
    older = store.snapshot_path("transform.t", "e" * 24)
    older.write_bytes(b"older")
    link.unlink()
    os.symlink(os.path.relpath(older, link.parent), link)

    assert store.repair_links(PROD) == 1
    assert link.resolve() == (store.target / pointer.snapshot).resolve()
    assert store.repair_links(PROD) == 0


def test_write_state_keeps_history_and_versions(tmp_path) -> None:
    store, _ = recorded(tmp_path)
    state = store.read_state(PROD)

    store.write_state(EnvState(PROD, state.version, pointers=dict(state.pointers)), True)

    assert store.read_state(PROD).version == state.version + 1
    assert (store.history_dir(PROD) / f"{state.version:08d}.json").exists()
