"""Everything under `target/`: atomic writes, snapshots, pointer (state) files, links and locks.

Outputs are immutable snapshots `snapshots/<kind>/<name>/<fingerprint>-<checksum>.parquet`.
An environment (production is `prod`) is one small JSON pointer file mapping node id ->
snapshot; replacing that file with `os.replace` is how an environment changes, atomically and at
a cost independent of the data. `cache/<kind>/<name>.parquet` links are derived views of the
pointers for people to read.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import hashlib
import json
import logging
import os
import re
import secrets
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

from seeknal_dagster.errors import StateError

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 1
PROD = "prod"
ENV_NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
# Snapshots whose checksum was verified in this process: (path, size, mtime_ns, checksum).
_VERIFIED: set[tuple[str, int, int, str]] = set()


class TargetWriteError(StateError, OSError):
    """Writing under target/ failed (disk full, no permission, a file where a folder belongs).

    NOTE: also an OSError, so code that tolerates a failed write (a cache that is only a cache)
    keeps tolerating it, while the CLI reports it as one clear message.
    """

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else super().__str__()


def utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def write_failure(path: Path, error: OSError, doing: str = "write") -> TargetWriteError:
    """The clear error for a failed write of `path`: the path, the OS's reason and a remedy."""
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        fix = "free disk space (or raise the quota), then run the command again"
    elif error.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        fix = "make target/ writable for this user, then run the command again"
    elif _blocking_file(path, error) is not None:
        blocking = _blocking_file(path, error)
        error = OSError(error.errno, f"{blocking} is a file, not a folder")
        fix = f"move {blocking} away (seeknal needs a folder there), then run the command again"
    else:
        fix = "check that target/ is a writable folder, then run the command again"
    reason = error.strerror or str(error)
    failure = TargetWriteError(f"cannot {doing} {path}: {reason}. Fix: {fix}")
    failure.errno, failure.strerror, failure.filename = error.errno, reason, str(path)
    return failure


def _blocking_file(path: Path, error: OSError) -> Path | None:
    """The nearest folder on `path`'s way that exists as something other than a folder (the
    path itself when making it as a folder failed because a file is there)."""
    candidates = list(reversed(path.parents))
    if error.errno == errno.EEXIST:
        candidates.append(path)
    for folder in candidates:
        if folder.exists() and not folder.is_dir():
            return folder
    return None


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Writes `data` to `path` so that a reader sees the old file or the new one, never a part.

    Raises:
        TargetWriteError: the write failed; the old file, if any, is unchanged.
    """
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as error:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if isinstance(error, TargetWriteError):
            raise
        raise write_failure(path, error) from None
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def atomic_write_json(path: Path, document: Mapping[str, Any]) -> None:
    """Writes a JSON state document atomically; every document carries `schema_version`."""
    body = {"schema_version": SCHEMA_VERSION, **document}
    atomic_write_bytes(path, (json.dumps(body, indent=1, sort_keys=False) + "\n").encode())


def read_json(path: Path, what: str) -> dict[str, Any] | None:
    """Reads a state document; None when the file does not exist.

    Raises:
        StateError: the file is corrupt or of an unknown schema version.
    """
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as error:
        blocking = _blocking_file(path, error)
        reason = f"{blocking} is a file, not a folder" if blocking else error.strerror
        raise StateError(
            f"cannot read {what} {path}: {reason}. Fix: make sure target/ is a folder this "
            "user can read and write"
        ) from None
    try:
        document = json.loads(raw)
    except ValueError:
        raise _corrupt(path, what, "not valid JSON") from None
    if not isinstance(document, dict):
        raise _corrupt(path, what, "not a JSON object")
    version = document.get("schema_version")
    if version != SCHEMA_VERSION:
        raise StateError(
            f"{what} {path} has schema_version {version!r}; this seeknal reads "
            f"version {SCHEMA_VERSION}. Fix: use the seeknal version that wrote it, or "
            f"{recovery_advice(path)}"
        )
    return document


class CorruptStateError(StateError):
    """A state file under target/ cannot be parsed; the message says how to recover."""


def _corrupt(path: Path, what: str, problem: str) -> CorruptStateError:
    return CorruptStateError(f"{what} {path} is corrupt ({problem}). Fix: {recovery_advice(path)}")


def recovery_advice(path: Path) -> str:
    """How to recover from a damaged state file, by where it lives under target/."""
    folder, grandparent = path.parent, path.parent.parent
    if grandparent.name == "environments":
        return (
            f"run `seeknal env delete {folder.name}`, then `seeknal plan {folder.name}` to "
            "create the environment again (production is not affected)"
        )
    if grandparent.name == "history":
        return f"delete {path}; only that rollback point is lost"
    if path.name == "manifest.json":
        return f"delete {path}; `seeknal plan` writes it again"
    if path.parent.name == "state":
        return (
            f"move the file away (e.g. `mv {path} {path}.damaged`), then run "
            "`seeknal run --full` to rebuild production's outputs"
        )
    return f"delete {path} and run the command again"


def file_checksum(path: Path) -> str:
    digest = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def validate_env_name(name: str) -> str:
    """Returns the name if it is a valid environment name.

    Raises:
        StateError: the name could escape target/ or is not of the allowed form.
    """
    if not isinstance(name, str) or not ENV_NAME_PATTERN.match(name):
        raise StateError(
            f"invalid environment name {name!r}: a name is 1-63 lower-case letters, digits, "
            "'-' or '_', starting with a letter or digit. Fix: use a name like dev or feature-x"
        )
    return name


@dataclass(frozen=True)
class Pointer:
    """One node's current output in one environment."""

    fingerprint: str
    snapshot: str  # path relative to target/
    rows: int
    bytes: int
    checksum: str
    columns: tuple[tuple[str, str], ...]
    built_at: str
    run_id: str = ""
    node: Mapping[str, Any] | None = None  # the node's manifest entry when it was built
    # The snapshot's modification time when recorded: while it is unchanged the snapshot is
    # trusted without re-reading it. None in pointer files written before it was recorded.
    mtime_ns: int | None = None
    # Why this output must not be used (a blocking check failed on it); empty when it may be.
    blocked: str = ""

    @property
    def derived_columns(self) -> list[tuple[str, str | None]]:
        """The columns as plans derive them (recorded at build), else the columns loaded."""
        recorded = (self.node or {}).get("columns")
        if recorded is not None:
            return [(str(c[0]), c[1]) for c in recorded]
        return [(name, type_name) for name, type_name in self.columns]

    def to_json(self) -> dict[str, Any]:
        document = {
            "fingerprint": self.fingerprint,
            "snapshot": self.snapshot,
            "rows": self.rows,
            "bytes": self.bytes,
            "checksum": self.checksum,
            "columns": [list(c) for c in self.columns],
            "built_at": self.built_at,
            "run_id": self.run_id,
            "node": dict(self.node or {}),
        }
        if self.mtime_ns is not None:
            document["mtime_ns"] = self.mtime_ns
        if self.blocked:
            document["blocked"] = self.blocked
        return document

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Pointer:
        """Reads one pointer; raises KeyError, TypeError or ValueError when it is malformed."""
        snapshot = data["snapshot"]
        if not isinstance(snapshot, str) or not _inside_target(snapshot):
            raise ValueError(f"snapshot {snapshot!r} is not a path inside target/")
        mtime_ns = data.get("mtime_ns")
        return cls(
            fingerprint=str(data["fingerprint"]),
            snapshot=snapshot,
            rows=int(data["rows"]),
            bytes=int(data["bytes"]),
            checksum=str(data["checksum"]),
            columns=tuple((str(n), str(t)) for n, t in data.get("columns", [])),
            built_at=data.get("built_at", ""),
            run_id=data.get("run_id", ""),
            node=data.get("node") or None,
            mtime_ns=None if mtime_ns is None else int(mtime_ns),
            blocked=str(data.get("blocked") or ""),
        )


def _inside_target(relative: str) -> bool:
    path = PurePosixPath(relative)
    return bool(relative) and not path.is_absolute() and ".." not in path.parts


@dataclass
class EnvState:
    """An environment's pointer file: version, time of the last change, node pointers, and the
    manifest entries of the rules last checked there (rules have no output to point at)."""

    environment: str
    version: int = 0
    updated_at: str = ""
    pointers: dict[str, Pointer] | None = None
    rules: dict[str, dict[str, Any]] | None = None

    def __post_init__(self) -> None:
        if self.pointers is None:
            self.pointers = {}
        if self.rules is None:
            self.rules = {}

    def to_json(self) -> dict[str, Any]:
        return {
            "environment": self.environment,
            "version": self.version,
            "updated_at": self.updated_at,
            "nodes": {node: p.to_json() for node, p in sorted(self.pointers.items())},
            "rules": dict(sorted(self.rules.items())),
        }


class Store:
    """The layout of `target/` and the operations that change it."""

    def __init__(self, target: Path):
        self.target = target

    # --- paths -------------------------------------------------------------------------------

    def snapshot_path(self, node_id: str, fingerprint: str) -> Path:
        """The base name of a node's snapshots for a fingerprint (`seal_snapshot` adds the
        content checksum to it)."""
        kind, name = node_id.split(".", 1)
        return self.target / "snapshots" / kind / name / f"{fingerprint}.parquet"

    def env_dir(self, env: str) -> Path:
        return self.target if env == PROD else self.target / "environments" / validate_env_name(env)

    def state_path(self, env: str) -> Path:
        if env == PROD:
            return self.target / "state" / "prod.json"
        return self.env_dir(env) / "state.json"

    def lock_path(self, env: str, suffix: str = "lock") -> Path:
        return self.target / "locks" / f"{validate_env_name(env)}.{suffix}"

    def cache_path(self, env: str, node_id: str) -> Path:
        kind, name = node_id.split(".", 1)
        return self.env_dir(env) / "cache" / kind / f"{name}.parquet"

    def export_path(self, env: str, relative: str, root: Path) -> Path:
        """Where an exposure writes: its real path in production, under the environment otherwise."""
        if env == PROD:
            path = Path(relative)
            return path if path.is_absolute() else root / path
        # NOTE: `..` and root parts are dropped so an environment's export always stays under
        # its own exports/ folder, whatever path the exposure names.
        parts = [p for p in Path(relative).parts if p not in ("/", "..", ".")]
        return self.env_dir(env).joinpath("exports", *parts)

    def history_dir(self, env: str) -> Path:
        return self.target / "state" / "history" / validate_env_name(env)

    # --- state -------------------------------------------------------------------------------

    def read_state(self, env: str, recover: bool = False) -> EnvState:
        """The environment's pointers; an empty state when it has never been written.

        Args:
            env: the environment (`prod` for production).
            recover: when the pointer file is damaged, move it aside (to
                `<name>.damaged-<time>`) and start from an empty state, as `seeknal run --full`
                does, instead of failing.

        Raises:
            StateError: the pointer file is unreadable, damaged (without `recover`) or of
                another schema version.
        """
        path = self.state_path(env)
        try:
            return self._parse_state(env, path)
        except CorruptStateError:
            if not recover:
                raise
        aside = path.with_name(f"{path.name}.damaged-{time.strftime('%Y%m%dT%H%M%S')}")
        try:
            os.replace(path, aside)
        except OSError as error:
            raise write_failure(aside, error, "move the damaged pointer file to") from None
        logger.warning("damaged pointer file %s moved to %s; starting from empty", path, aside)
        return EnvState(env)

    def _parse_state(self, env: str, path: Path) -> EnvState:
        document = read_json(path, "pointer file")
        if document is None:
            return EnvState(env)
        try:
            pointers = {node: Pointer.from_json(p) for node, p in document["nodes"].items()}
            rules = {str(k): dict(v) for k, v in (document.get("rules") or {}).items()}
            return EnvState(
                env, int(document["version"]), document.get("updated_at", ""), pointers, rules
            )
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            raise _corrupt(path, "pointer file", f"missing or bad field {error}") from None

    def write_state(self, state: EnvState, keep_history: bool = False) -> None:
        """Replaces the environment's pointer file atomically, optionally keeping the old one."""
        path = self.state_path(state.environment)
        if keep_history and path.exists():
            old = self.read_state(state.environment)
            atomic_write_json(
                self.history_dir(state.environment) / f"{old.version:08d}.json", old.to_json()
            )
        state.version += 1
        state.updated_at = utc_now()
        atomic_write_json(path, state.to_json())

    def block(self, env: str, node_id: str, snapshot: str, reason: str) -> None:
        """Marks a node's output in `env` as not to be used (a blocking check failed on it), so
        downstream steps refuse it and the next run rebuilds it. Only the output that was
        checked is marked: a newer one recorded meanwhile stays as it is."""
        with self.state_lock(env):
            state = self.read_state(env)
            pointer = state.pointers.get(node_id)
            if pointer is None or pointer.snapshot != snapshot:
                return
            state.pointers[node_id] = replace(pointer, blocked=reason)
            self.write_state(state)

    def seal_snapshot(self, node_id: str, fingerprint: str, staged: Path) -> tuple[Path, str]:
        """Moves a freshly written output to its final, immutable name; returns it and its
        checksum.

        The name carries the fingerprint and the content's checksum: a rebuild that writes
        other bytes for the same fingerprint (row order is not guaranteed) gets a file of its
        own, so no pointer anywhere ever sees its snapshot change under it.
        """
        checksum = file_checksum(staged)
        final = self.snapshot_path(node_id, fingerprint).with_name(
            f"{fingerprint}-{checksum[:12]}.parquet"
        )
        try:
            os.replace(staged, final)
        except OSError as error:
            raise write_failure(final, error) from None
        return final, checksum

    def staging_path(self, node_id: str, fingerprint: str) -> Path:
        """Where a step writes its output before `seal_snapshot` names it."""
        final = self.snapshot_path(node_id, fingerprint)
        return final.with_name(f".{fingerprint}.tmp-{os.getpid()}-{secrets.token_hex(4)}.parquet")

    def record_rules(self, env: str, entries: Mapping[str, Mapping[str, Any]]) -> None:
        """Records the manifest entries of rules just checked in `env` (under the state lock)."""
        with self.state_lock(env):
            state = self.read_state(env)
            state.rules.update({rule: dict(entry) for rule, entry in entries.items()})
            self.write_state(state)

    def record_outputs(self, env: str, pointers: Mapping[str, Pointer]) -> None:
        """Points `env` at new outputs (read-modify-write under the state lock), then brings its
        cache links in line with the pointer file.

        NOTE: the pointer file changes first. A command killed before the links follow leaves
        a link to an older snapshot (still a complete file), which the next recording repairs;
        linking first would show data production never pointed at if the pointer write then
        failed. Links change under the state lock so that concurrent steps never undo each
        other's.
        """
        stamped = {node_id: self._stamped(pointer) for node_id, pointer in pointers.items()}
        with self.state_lock(env):
            state = self.read_state(env)
            state.pointers.update(stamped)
            self.write_state(state)
            self.repair_links(env, state)

    def _stamped(self, pointer: Pointer) -> Pointer:
        """The pointer with its snapshot's modification time, if it does not carry one yet."""
        if pointer.mtime_ns is not None:
            return pointer
        try:
            stat = (self.target / pointer.snapshot).stat()
        except OSError:
            return pointer
        if stat.st_size != pointer.bytes:
            return pointer
        return dataclasses.replace(pointer, mtime_ns=stat.st_mtime_ns)

    def is_current(self, pointer: Pointer | None, fingerprint: str) -> bool:
        """True when the pointer holds an intact output for `fingerprint`.

        Intact: the snapshot has the recorded size and either its recorded modification time
        (a stat, no read) or, when that changed or was never recorded, the recorded checksum.
        A truncated or overwritten snapshot is therefore rebuilt, never read.
        """
        if pointer is None or pointer.fingerprint != fingerprint or pointer.blocked:
            return False
        path = self.target / pointer.snapshot
        try:
            stat = path.stat()
        except OSError:
            return False
        if stat.st_size != pointer.bytes:
            return False
        if pointer.mtime_ns is not None and stat.st_mtime_ns == pointer.mtime_ns:
            return True
        key = (str(path), stat.st_size, stat.st_mtime_ns, pointer.checksum)
        if key in _VERIFIED:
            return True
        try:
            intact = file_checksum(path) == pointer.checksum
        except OSError:
            return False
        if intact:
            _VERIFIED.add(key)
        else:
            logger.warning("snapshot %s does not match its checksum; it will be rebuilt", path)
        return intact

    # --- exports ------------------------------------------------------------------------------

    def export_record_path(self, env: str) -> Path:
        if env == PROD:
            return self.target / "state" / "prod.exports.json"
        return self.env_dir(env) / "exports.json"

    def export_record(self, env: str) -> dict[str, Any]:
        """Which snapshot each exposure of `env` was last exported from, and the exported
        file's identity (inode, size, mtime) right after that export."""
        document = read_json(self.export_record_path(env), "export record") or {}
        return dict(document.get("exports", {}))

    @staticmethod
    def export_entry(snapshot: str, destination: Path) -> dict[str, Any] | None:
        """The record entry of an export; None when the exported file does not exist."""
        try:
            info = destination.stat()
        except FileNotFoundError:
            return None
        return {"snapshot": snapshot, "file": [info.st_ino, info.st_size, info.st_mtime_ns]}

    def record_exports(self, env: str, entries: Mapping[str, dict[str, Any] | None]) -> None:
        """Adds export entries to the environment's record (under its state lock)."""
        with self.state_lock(env):
            record = self.export_record(env)
            record.update(entries)
            atomic_write_json(self.export_record_path(env), {"exports": record})

    # --- links -------------------------------------------------------------------------------

    def link(self, env: str, node_id: str, pointer: Pointer) -> None:
        """Makes `cache/<kind>/<name>.parquet` a relative link to the pointer's snapshot.

        Raises:
            TargetWriteError: the link cannot be written.
        """
        link = self.cache_path(env, node_id)
        target = self._link_target(link, pointer)
        tmp = link.with_name(f".{link.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")
        try:
            link.parent.mkdir(parents=True, exist_ok=True)
            os.symlink(target, tmp)
            os.replace(tmp, link)
        except OSError as error:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise write_failure(link, error, "link") from None

    def _link_target(self, link: Path, pointer: Pointer) -> str:
        return os.path.relpath(self.target / pointer.snapshot, link.parent)

    def repair_links(self, env: str, state: EnvState | None = None) -> int:
        """Re-links every node whose cache link is missing or points elsewhere than its
        pointer (one readlink per node, no data read). Returns how many were re-linked."""
        pointers = (state or self.read_state(env)).pointers
        repaired = 0
        for node_id, pointer in pointers.items():
            link = self.cache_path(env, node_id)
            try:
                if os.readlink(link) == self._link_target(link, pointer):
                    continue
            except OSError:
                pass
            self.link(env, node_id, pointer)
            repaired += 1
        return repaired

    def relink_all(self, env: str, prune: bool = False) -> None:
        """Brings every cache link of `env` in line with its pointer file (and, with `prune`,
        removes links of nodes the pointer file no longer has); links already right are left."""
        state = self.read_state(env)
        pointers = state.pointers
        self.repair_links(env, state)
        if not prune:
            return
        for link in (self.env_dir(env) / "cache").glob("*/*.parquet"):
            if f"{link.parent.name}.{link.stem}" not in pointers:
                link.unlink(missing_ok=True)

    # --- locks -------------------------------------------------------------------------------

    @contextlib.contextmanager
    def environment_lock(self, env: str, command: str) -> Iterator[None]:
        """Holds the environment's writer lock; a second writer is refused at once.

        Raises:
            StateError: another command holds the lock (the message names it).
        """
        path = self.lock_path(env)
        handle = _open_lock(path, "a+")
        try:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as error:
                if error.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
                handle.seek(0)
                holder = handle.read().strip() or "another seeknal command"
                raise StateError(
                    f"environment '{env}' is busy: {holder} is writing it. Fix: "
                    "wait for that command to finish, then run this one again"
                ) from None
            # The holder's description is for a refused command to quote; released, it goes.
            with contextlib.suppress(OSError):
                handle.seek(0)
                handle.truncate()
                handle.write(f"`{command}` (pid {os.getpid()}, since {utc_now()})")
                handle.flush()
            try:
                yield
            finally:
                with contextlib.suppress(OSError):
                    handle.seek(0)
                    handle.truncate()
        finally:
            handle.close()

    @contextlib.contextmanager
    def state_lock(self, env: str) -> Iterator[None]:
        """Serialises read-modify-write of one pointer file (held for milliseconds)."""
        path = self.lock_path(env, "state.lock")
        with _open_lock(path, "a") as handle:
            deadline = time.monotonic() + 60
            while True:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise StateError(
                            f"timed out waiting for the state lock of '{env}'. Fix: "
                            f"make sure no seeknal process is stuck, then delete "
                            f"{path}"
                        ) from None
                    time.sleep(0.01)
            yield


def _open_lock(path: Path, mode: str):  # noqa: ANN202 - a text file handle
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return open(path, mode)
    except OSError as error:
        raise write_failure(path, error, "create the lock file") from None
