"""Plans: what an environment would rebuild, compared with its baseline (production).

Building a plan reads the project and production's pointer file and has no side effects;
`save` writes the plan document under `target/environments/<env>/`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from seeknal_dagster import schemas
from seeknal_dagster.diff import BREAKING, EXECUTED, NEW, REMOVED, Change, categorise
from seeknal_dagster.errors import PlanError, StateError
from seeknal_dagster.manifest import build_manifest
from seeknal_dagster.project import Project
from seeknal_dagster.storage import PROD, EnvState, Store, atomic_write_json, read_json, utc_now


@dataclass(frozen=True)
class Plan:
    """The saved plan of one environment (SPEC 5's JSON document)."""

    environment: str
    baseline: str
    created_at: str
    project_fingerprint: str
    baseline_version: int
    changes: tuple[Change, ...]
    to_execute: tuple[str, ...]
    baseline_fingerprints: Mapping[str, str] | None = None

    @property
    def added(self) -> list[str]:
        return [c.node for c in self.changes if c.category == NEW]

    @property
    def removed(self) -> list[str]:
        return [c.node for c in self.changes if c.category == REMOVED]

    @property
    def breaking(self) -> list[str]:
        return [c.node for c in self.changes if c.category == BREAKING]

    def to_json(self) -> dict[str, Any]:
        return {
            "environment": self.environment,
            "baseline": self.baseline,
            "created_at": self.created_at,
            "project_fingerprint": self.project_fingerprint,
            "baseline_version": self.baseline_version,
            "changes": [c.to_json() for c in self.changes],
            "to_execute": list(self.to_execute),
            "added": self.added,
            "removed": self.removed,
            "baseline_fingerprints": dict(self.baseline_fingerprints or {}),
        }

    @classmethod
    def from_json(cls, document: Mapping[str, Any]) -> Plan:
        changes = tuple(
            Change(
                c["node"], c["category"], tuple(c.get("reasons", [])), tuple(c.get("impact", []))
            )
            for c in document["changes"]
        )
        return cls(
            environment=document["environment"],
            baseline=document.get("baseline", PROD),
            created_at=document["created_at"],
            project_fingerprint=document["project_fingerprint"],
            baseline_version=int(document.get("baseline_version", 0)),
            changes=changes,
            to_execute=tuple(document["to_execute"]),
            baseline_fingerprints=dict(document.get("baseline_fingerprints") or {}),
        )


def project_fingerprint(prints: Mapping[str, str]) -> str:
    """One digest of every node's fingerprint: changes whenever a plan would change."""
    text = json.dumps(sorted(prints.items()), separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def baseline_manifest(state: EnvState) -> dict[str, dict[str, Any]]:
    """The manifest of what an environment last built, from its pointer file."""
    nodes: dict[str, dict[str, Any]] = {}
    for node_id, pointer in state.pointers.items():
        if not pointer.node:
            continue
        entry = dict(pointer.node)
        entry["fingerprint"] = pointer.fingerprint
        entry["columns"] = [list(c) for c in pointer.derived_columns]
        nodes[node_id] = entry
    for rule_id, rule_entry in state.rules.items():
        nodes[rule_id] = dict(rule_entry)
    return nodes


def current_manifest(
    project: Project, prints: Mapping[str, str], baseline: Mapping[str, Mapping[str, Any]]
) -> dict[str, Any]:
    """The project's manifest with output columns for every node that differs from `baseline`."""
    known = {
        node_id: [(str(c[0]), c[1]) for c in entry["columns"]]
        for node_id, entry in baseline.items()
        if prints.get(node_id) == entry.get("fingerprint") and entry.get("columns") is not None
    }
    changed = {n for n in prints if n in baseline and n not in known}
    derived = schemas.derive(project, known, only=changed)
    columns = {**known, **derived.columns}
    return build_manifest(project, prints, columns)


def build(
    project: Project, prints: Mapping[str, str], baseline_state: EnvState, environment: str
) -> tuple[Plan, dict[str, Any]]:
    """The plan of `environment` against `baseline_state`, and the current manifest."""
    baseline = baseline_manifest(baseline_state)
    manifest = current_manifest(project, prints, baseline)
    changes = categorise(baseline, manifest["nodes"])
    rules = {n for n, spec in project.nodes.items() if spec.kind == "rule"}
    to_execute = tuple(c.node for c in changes if c.category in EXECUTED and c.node not in rules)
    plan = Plan(
        environment=environment,
        baseline=baseline_state.environment,
        created_at=utc_now(),
        project_fingerprint=project_fingerprint(prints),
        baseline_version=baseline_state.version,
        changes=tuple(changes),
        to_execute=to_execute,
        baseline_fingerprints={n: p.fingerprint for n, p in baseline_state.pointers.items()},
    )
    return plan, manifest


def save(store: Store, plan: Plan, manifest: Mapping[str, Any], ttl_days: float) -> None:
    """Writes plan.json, manifest.json and env_config.json of the plan's environment."""
    folder = store.env_dir(plan.environment)
    atomic_write_json(folder / "manifest.json", manifest)
    atomic_write_json(folder / "plan.json", plan.to_json())
    config = read_env_config(store, plan.environment) or {}
    now = utc_now()
    atomic_write_json(
        folder / "env_config.json",
        {
            "name": plan.environment,
            "created_at": config.get("created_at", now),
            "last_accessed": now,
            "ttl_days": config.get("ttl_days", ttl_days),
            "status": "planned",
            "nodes_changed": len(plan.to_execute),
        },
    )


def load(store: Store, environment: str) -> Plan:
    """The saved plan of an environment.

    Raises:
        PlanError: there is no plan; StateError: the plan file is corrupt.
    """
    document = read_json(store.env_dir(environment) / "plan.json", "plan file")
    if document is None:
        raise PlanError(
            f"environment '{environment}' has no plan. Fix: run `seeknal plan {environment}` first"
        )
    try:
        return Plan.from_json(document)
    except (KeyError, TypeError, ValueError) as error:
        raise StateError(
            f"plan file of '{environment}' is corrupt (bad field {error}). Fix: run "
            f"`seeknal plan {environment}` again"
        ) from None


def read_env_config(store: Store, environment: str) -> dict[str, Any] | None:
    return read_json(store.env_dir(environment) / "env_config.json", "environment config")
