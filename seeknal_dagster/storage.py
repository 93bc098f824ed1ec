"""Everything under `target/`: atomic writes, snapshots, pointer (state) files, links and locks.

Outputs are immutable snapshots `snapshots/<kind>/<name>/<fingerprint>.parquet`. An environment
(production is `prod`) is one small JSON pointer file mapping node id -> snapshot; replacing that
file with `os.replace` is how an environment changes, atomically and at a cost independent of the
data. `cache/<kind>/<name>.parquet` links are derived views of the pointers for people to read.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import re
import secrets
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from seeknal_dagster.errors import StateError

SCHEMA_VERSION = 1
PROD = "prod"
ENV_NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


def utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Writes `data` to `path` so that a reader sees the old file or the new one, never a part."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")
    try:
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
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
        raise StateError(
            f"cannot read {what} {path}: {error.strerror}. Fix: check the permissions of target/"
        ) from None
    try:
        document = json.loads(raw)
    except ValueError:
        raise StateError(
            f"{what} {path} is corrupt (not valid JSON). Fix: delete it and run "
            "`seeknal run --full` to rebuild production's state"
        ) from None
    if not isinstance(document, dict):
        raise StateError(
            f"{what} {path} is corrupt (not a JSON object). Fix: delete it and run "
            "`seeknal run --full`"
        )
    version = document.get("schema_version")
    if version != SCHEMA_VERSION:
        raise StateError(
            f"{what} {path} has schema_version {version!r}; this seeknal reads "
            f"version {SCHEMA_VERSION}. Fix: use the seeknal version that wrote it, "
            "or delete the file and run `seeknal run --full`"
        )
    return document


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
            f"invalid environment name {name!r}: use 1-63 lower-case letters, "
            "digits, '-' or '_', starting with a letter or digit (e.g. dev, "
            "feature-x)"
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

    @property
    def derived_columns(self) -> list[tuple[str, str | None]]:
        """The columns as plans derive them (recorded at build), else the columns loaded."""
        recorded = (self.node or {}).get("columns")
        if recorded is not None:
            return [(str(c[0]), c[1]) for c in recorded]
        return [(name, type_name) for name, type_name in self.columns]

    def to_json(self) -> dict[str, Any]:
        return {
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

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Pointer:
        return cls(
            fingerprint=data["fingerprint"],
            snapshot=data["snapshot"],
            rows=int(data["rows"]),
            bytes=int(data["bytes"]),
            checksum=data["checksum"],
            columns=tuple((str(n), str(t)) for n, t in data.get("columns", [])),
            built_at=data.get("built_at", ""),
            run_id=data.get("run_id", ""),
            node=data.get("node") or None,
        )


@dataclass
class EnvState:
    """An environment's pointer file: version, time of the last change, node pointers."""

    environment: str
    version: int = 0
    updated_at: str = ""
    pointers: dict[str, Pointer] | None = None

    def __post_init__(self) -> None:
        if self.pointers is None:
            self.pointers = {}

    def to_json(self) -> dict[str, Any]:
        return {
            "environment": self.environment,
            "version": self.version,
            "updated_at": self.updated_at,
            "nodes": {node: p.to_json() for node, p in sorted(self.pointers.items())},
        }


class Store:
    """The layout of `target/` and the operations that change it."""

    def __init__(self, target: Path):
        self.target = target

    # --- paths -------------------------------------------------------------------------------

    def snapshot_path(self, node_id: str, fingerprint: str) -> Path:
        kind, name = node_id.split(".", 1)
        return self.target / "snapshots" / kind / name / f"{fingerprint}.parquet"

    def env_dir(self, env: str) -> Path:
        return self.target if env == PROD else self.target / "environments" / validate_env_name(env)

    def state_path(self, env: str) -> Path:
        if env == PROD:
            return self.target / "state" / "prod.json"
        return self.env_dir(env) / "state.json"

    def cache_path(self, env: str, node_id: str) -> Path:
        kind, name = node_id.split(".", 1)
        return self.env_dir(env) / "cache" / kind / f"{name}.parquet"

    def export_path(self, env: str, relative: str, root: Path) -> Path:
        """Where an exposure writes: its real path in production, under the environment otherwise."""
        if env == PROD:
            path = Path(relative)
            return path if path.is_absolute() else root / path
        return self.env_dir(env) / "exports" / Path(relative.lstrip("/"))

    def history_dir(self, env: str) -> Path:
        return self.target / "state" / "history" / env

    # --- state -------------------------------------------------------------------------------

    def read_state(self, env: str) -> EnvState:
        """The environment's pointers; an empty state when it has never been written."""
        path = self.state_path(env)
        document = read_json(path, "pointer file")
        if document is None:
            return EnvState(env)
        try:
            pointers = {node: Pointer.from_json(p) for node, p in document["nodes"].items()}
            return EnvState(env, int(document["version"]), document.get("updated_at", ""), pointers)
        except (KeyError, TypeError, ValueError) as error:
            raise StateError(
                f"pointer file {path} is corrupt (missing or bad field {error}). "
                "Fix: delete it and run `seeknal run --full`"
            ) from None

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

    def record_outputs(self, env: str, pointers: Mapping[str, Pointer]) -> None:
        """Points `env` at new outputs (read-modify-write under the state lock) and links them."""
        with self.state_lock(env):
            state = self.read_state(env)
            state.pointers.update(pointers)
            self.write_state(state)
        for node_id, pointer in pointers.items():
            self.link(env, node_id, pointer)

    def is_current(self, pointer: Pointer | None, fingerprint: str) -> bool:
        """True when the pointer holds an intact output for `fingerprint`."""
        if pointer is None or pointer.fingerprint != fingerprint:
            return False
        try:
            return (self.target / pointer.snapshot).stat().st_size == pointer.bytes
        except OSError:
            return False

    # --- links -------------------------------------------------------------------------------

    def link(self, env: str, node_id: str, pointer: Pointer) -> None:
        """Makes `cache/<kind>/<name>.parquet` a relative link to the pointer's snapshot."""
        link = self.cache_path(env, node_id)
        link.parent.mkdir(parents=True, exist_ok=True)
        target = os.path.relpath(self.target / pointer.snapshot, link.parent)
        tmp = link.with_name(f".{link.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")
        os.symlink(target, tmp)
        os.replace(tmp, link)

    def relink_all(self, env: str, prune: bool = False) -> None:
        """Brings every cache link of `env` in line with its pointer file (and, with `prune`,
        removes links of nodes the pointer file no longer has)."""
        pointers = self.read_state(env).pointers
        for node_id, pointer in pointers.items():
            self.link(env, node_id, pointer)
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
        path = self.target / "locks" / f"{env}.lock"
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(path, "a+")
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
            handle.seek(0)
            handle.truncate()
            handle.write(f"`{command}` (pid {os.getpid()}, since {utc_now()})")
            handle.flush()
            yield
        finally:
            handle.close()

    @contextlib.contextmanager
    def state_lock(self, env: str) -> Iterator[None]:
        """Serialises read-modify-write of one pointer file (held for milliseconds)."""
        path = self.target / "locks" / f"{env}.state.lock"
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a") as handle:
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
