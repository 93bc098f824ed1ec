"""Fingerprints (one per node, chained through inputs) and the manifest document.

A fingerprint covers a node's functional definition (SQL compared in normalised form), its
inputs' fingerprints and, for sources, the content of the data file. Description, owner, tags and
column descriptions never enter it. It decides what an incremental run executes and is the
asset's Dagster `code_version`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from seeknal_dagster import sql as sqlmod
from seeknal_dagster.project import Project
from seeknal_dagster.specs import (
    ExposureSpec,
    FeatureGroupSpec,
    NodeSpec,
    ProfileSpec,
    RuleSpec,
    SourceSpec,
    TransformSpec,
)
from seeknal_dagster.storage import atomic_write_json, read_json, utc_now

_HASH_CACHE = "file_hashes.json"


def definition(spec: NodeSpec) -> dict[str, Any]:
    """The functional definition of a node: what, if changed, changes its output.

    The result is plain JSON data (lists, not tuples), so it compares equal to itself after a
    round trip through a state file.
    """
    return json.loads(json.dumps(_definition(spec), default=str))


def _definition(spec: NodeSpec) -> dict[str, Any]:
    if isinstance(spec, SourceSpec):
        return {
            "format": spec.format,
            "path": Path(spec.path).as_posix(),
            "options": asdict(spec.options),
            "columns": [[c.name, c.type] for c in spec.columns],
        }
    if isinstance(spec, TransformSpec):
        return {"sql": sqlmod.normalize(spec.query)}
    if isinstance(spec, FeatureGroupSpec):
        return {
            "entity": spec.entity,
            "join_keys": list(spec.join_keys),
            "event_time_col": spec.event_time_col,
            "features": None
            if spec.features is None
            else [[f.name, f.type] for f in spec.features],
            "offline": [list(item) for item in spec.offline],
            "online": [list(item) for item in spec.online],
            "sql": sqlmod.normalize(spec.query) if spec.query else None,
        }
    if isinstance(spec, ExposureSpec):
        return {
            "type": spec.type,
            "path": Path(spec.path).as_posix(),
            "format": spec.format,
            "sql": sqlmod.normalize(spec.query) if spec.query else None,
        }
    if isinstance(spec, RuleSpec):
        checks = []
        for check in spec.checks:
            entry = asdict(check)
            entry["values"] = [str(v) for v in check.values]
            if check.sql:
                entry["sql"] = sqlmod.normalize(check.sql)
            checks.append(entry)
        return {"checks": checks}
    if isinstance(spec, ProfileSpec):
        selected = spec.selected_columns
        return {"columns": None if selected is None else list(selected)}
    raise TypeError(f"no definition for {type(spec).__name__}")


def _digest(payload: object) -> str:
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


class FileHashes:
    """Content hashes of data files, cached by (size, mtime) so unchanged files are not re-read."""

    def __init__(self, target: Path):
        self.path = target / _HASH_CACHE
        self._entries: dict[str, list[Any]] | None = None
        self._dirty = False

    def _load(self) -> dict[str, list[Any]]:
        if self._entries is None:
            try:
                document = read_json(self.path, "file hash cache") or {}
            except Exception:  # a damaged cache is only a cache: rebuild it
                document = {}
            self._entries = dict(document.get("files", {}))
        return self._entries

    def hash(self, path: Path) -> str:
        stat = path.stat()
        key = str(path.resolve())
        entries = self._load()
        cached = entries.get(key)
        if cached and cached[0] == stat.st_size and cached[1] == stat.st_mtime_ns:
            return str(cached[2])
        digest = hashlib.blake2b(digest_size=16)
        with open(path, "rb") as handle:
            while chunk := handle.read(1 << 22):
                digest.update(chunk)
        entries[key] = [stat.st_size, stat.st_mtime_ns, digest.hexdigest()]
        self._dirty = True
        return digest.hexdigest()

    def save(self) -> None:
        """Persists new hashes; a read-only target/ only costs a re-hash next time."""
        if self._dirty and self._entries is not None:
            try:
                atomic_write_json(self.path, {"files": self._entries})
            except OSError:
                pass
            self._dirty = False


def fingerprints(project: Project, hashes: FileHashes | None = None) -> dict[str, str]:
    """One fingerprint per supported node, in topological order."""
    hashes = hashes or FileHashes(project.target)
    result: dict[str, str] = {}
    for node_id in project.graph.topological_order:
        spec = project.nodes[node_id]
        payload: dict[str, Any] = {
            "kind": spec.kind,
            "definition": definition(spec),
            "inputs": _inputs_payload(spec, result),
        }
        if isinstance(spec, SourceSpec):
            payload["data"] = hashes.hash(project.resolve_path(spec.path))
        result[node_id] = _digest(payload)
    hashes.save()
    return result


def _inputs_payload(spec: NodeSpec, done: Mapping[str, str]) -> list[tuple[str, str]]:
    pairs = [(ref, done[ref]) for ref in spec.inputs]
    # NOTE: without SQL, the first input of a feature group or exposure is the base of the
    # join, so order changes the output; SQL names its inputs itself, so order does not count.
    if isinstance(spec, (FeatureGroupSpec, ExposureSpec)) and not spec.sql:
        return pairs
    return sorted(pairs)


def node_entry(
    spec: NodeSpec, fingerprint: str, columns: Sequence[tuple[str, str | None]] | None = None
) -> dict[str, Any]:
    """A node's manifest entry: identity, definition, SQL as written, columns, metadata."""
    entry: dict[str, Any] = {
        "kind": spec.kind,
        "name": spec.name,
        "file": spec.file,
        "inputs": list(spec.inputs),
        "fingerprint": fingerprint,
        "definition": definition(spec),
        "description": spec.description,
        "owner": spec.owner,
        "tags": list(spec.tags),
        "sql": spec.sql,
        "columns": None if columns is None else [list(c) for c in columns],
    }
    declared = getattr(spec, "columns", None) or getattr(spec, "features", None)
    if declared:
        entry["column_descriptions"] = {c.name: c.description for c in declared if c.description}
    return entry


def build_manifest(
    project: Project,
    prints: Mapping[str, str],
    columns: Mapping[str, Sequence[tuple[str, str | None]] | None] | None = None,
) -> dict[str, Any]:
    """The manifest document of the project (nodes, edges, fingerprints, derived columns)."""
    columns = columns or {}
    nodes = {
        node_id: node_entry(project.nodes[node_id], prints[node_id], columns.get(node_id))
        for node_id in project.graph.topological_order
    }
    edges = [[parent, node_id] for node_id, spec in project.nodes.items() for parent in spec.inputs]
    return {
        "project": project.name,
        "generated_at": utc_now(),
        "nodes": nodes,
        "edges": edges,
        "unsupported": [u.id for u in project.unsupported],
    }


def write_manifest(path: Path, manifest: Mapping[str, Any]) -> None:
    atomic_write_json(path, manifest)
