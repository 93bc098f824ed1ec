"""Shared fixtures: a project factory, the real `seeknal` CLI and a snapshot of `target/`."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

ProjectFactory = Callable[..., Path]
SeeknalRunner = Callable[..., subprocess.CompletedProcess]
TargetSnapshot = dict[str, bytes] | None


@pytest.fixture
def make_project(tmp_path: Path) -> ProjectFactory:
    """`make_project(files, name="shop")`: writes a project into a fresh folder, returns its root.

    `files` maps paths relative to the root to text or bytes. `seeknal_project.yml`
    (`name: <name>`) is added unless `files` has one. Each call makes a new folder.
    """
    count = 0

    def make(files: dict[str, str | bytes], name: str = "shop") -> Path:
        nonlocal count
        count += 1
        root = tmp_path / f"project{count}"
        root.mkdir()
        for relative, content in {"seeknal_project.yml": f"name: {name}\n", **files}.items():
            path = root / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, bytes):
                path.write_bytes(content)
            else:
                path.write_text(content, encoding="utf-8")
        return root

    return make


def run_seeknal(root: Path, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Runs the real CLI on the project at `root` as CI would (plain output, instance in target/).

    The command runs in `cwd` (default: `root`).
    """
    env = {k: v for k, v in os.environ.items() if k not in ("DAGSTER_HOME", "SEEKNAL_PROJECT_DIR")}
    env["CI"] = "true"
    command = [sys.executable, "-m", "seeknal_dagster.cli", "--project", str(root), *args]
    return subprocess.run(
        command, cwd=cwd or root, env=env, capture_output=True, text=True, timeout=300, check=False
    )


@pytest.fixture
def seeknal() -> SeeknalRunner:
    """`seeknal(root, *args)`: see `run_seeknal`."""
    return run_seeknal


def snapshot_target(root: Path) -> TargetSnapshot:
    """Every entry under `root/target` (relative path -> bytes; folders end in `/`).

    None when there is no target/, so comparing two snapshots also catches a target/ that
    appeared.
    """
    target = root / "target"
    if not target.exists():
        return None
    entries: dict[str, bytes] = {}
    for path in sorted(target.rglob("*")):
        relative = path.relative_to(target).as_posix()
        if path.is_dir():
            entries[f"{relative}/"] = b""
        else:
            entries[relative] = path.read_bytes()
    return entries


@pytest.fixture
def target_snapshot() -> Callable[[Path], TargetSnapshot]:
    """`target_snapshot(root)`: see `snapshot_target`."""
    return snapshot_target


def parquet_rows(path: Path, query: str = "SELECT * FROM t ORDER BY ALL") -> list[tuple]:
    """Runs `query` over the parquet file at `path`, seen as table `t`."""
    import duckdb

    con = duckdb.connect()
    con.execute(f"CREATE VIEW t AS SELECT * FROM read_parquet('{path}')")
    return con.execute(query).fetchall()


def cache_file(root: Path, node_id: str) -> Path:
    """Production's readable link to a node's output: target/cache/<kind>/<name>.parquet."""
    kind, name = node_id.split(".")
    return root / "target" / "cache" / kind / f"{name}.parquet"
