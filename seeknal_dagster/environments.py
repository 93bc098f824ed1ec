"""Environments: apply a saved plan, promote atomically, roll back, list, delete, collect garbage.

An environment is a pointer file. Applying one points every unchanged node at production's
snapshot (no data is copied) and runs only the plan's nodes. Promoting replaces the target's
pointer file in one `os.replace`, after keeping the old one for `rollback`.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from seeknal_dagster import plan as planning
from seeknal_dagster.errors import PlanError, StateError
from seeknal_dagster.project import Project
from seeknal_dagster.runner import RunPlan
from seeknal_dagster.specs import ExposureSpec, RuleSpec
from seeknal_dagster.storage import (
    PROD,
    EnvState,
    Pointer,
    Store,
    atomic_write_json,
    read_json,
    utc_now,
    validate_env_name,
)

logger = logging.getLogger(__name__)

FAULT_POINT_VARIABLE = "SEEKNAL_FAULT_POINT"


def checkpoint(name: str) -> None:
    """Test hook: dies with SIGKILL at the named point when $SEEKNAL_FAULT_POINT says so.

    Crash-safety tests use it to stop a command at every step of a promotion.
    """
    if os.environ.get(FAULT_POINT_VARIABLE) == name:
        os.kill(os.getpid(), signal.SIGKILL)


@dataclass(frozen=True)
class EnvInfo:
    """One row of `seeknal env list`."""

    name: str
    created_at: str
    last_accessed: str
    status: str
    nodes_changed: int


def check_new_name(name: str) -> str:
    """Validates a name for an environment to create (not production).

    Raises:
        StateError: the name is invalid or is production's.
    """
    validate_env_name(name)
    if name == PROD:
        raise StateError(
            "'prod' is production, not an environment: it cannot be planned, applied or "
            "deleted as one. Fix: use another name, e.g. dev"
        )
    return name


def require_existing(store: Store, name: str) -> str:
    """Validates that `name` is an existing environment, suggesting a close name if not."""
    from seeknal_dagster.specs import did_you_mean

    validate_env_name(name)
    if name != PROD and not (store.env_dir(name) / "env_config.json").exists():
        known = [info.name for info in list_environments(store)]
        raise PlanError(
            f"no environment named '{name}'{did_you_mean(name, known)}. Fix: create "
            f"it with `seeknal plan {name}`"
        )
    return name


# --- apply -----------------------------------------------------------------------------------


def prepare_apply(
    project: Project, store: Store, prints: Mapping[str, str], env: str, force: bool
) -> tuple[planning.Plan, RunPlan, dict[str, Pointer]]:
    """Checks the saved plan and decides what applying it runs and reuses. No side effects.

    Returns:
        The plan, the run plan (nodes to execute vs. cached) and the production pointers the
        environment reuses.

    Raises:
        PlanError: no plan, or a stale one without `force`.
    """
    check_new_name(env)
    saved = planning.load(store, env)
    current = planning.project_fingerprint(prints)
    if saved.project_fingerprint != current and not force:
        raise PlanError(
            f"the plan of '{env}' is stale: the project changed since `seeknal plan "
            f"{env}` ({saved.created_at}). Fix: run `seeknal plan {env}` again, or "
            "pass --force to apply the current project anyway"
        )

    prod = store.read_state(PROD).pointers
    mine = store.read_state(env).pointers
    data_nodes = [
        n for n in project.graph.topological_order if not isinstance(project.nodes[n], RuleSpec)
    ]
    wanted = set(saved.to_execute) if not force else set()
    reused: dict[str, Pointer] = {}
    to_run: list[str] = []
    cached: list[str] = []
    for node_id in data_nodes:
        fingerprint = prints[node_id]
        if store.is_current(mine.get(node_id), fingerprint):
            cached.append(node_id)
        elif node_id not in wanted and store.is_current(prod.get(node_id), fingerprint):
            reused[node_id] = prod[node_id]
            cached.append(node_id)
        else:
            to_run.append(node_id)
    layers = tuple(
        tuple(n for n in layer if n in data_nodes)
        for layer in project.graph.layers
        if any(n in data_nodes for n in layer)
    )
    run_plan = RunPlan(tuple(to_run), tuple(cached), tuple(data_nodes), layers)
    return saved, run_plan, reused


def seed(store: Store, env: str, reused: Mapping[str, Pointer], prints: Mapping[str, str]) -> None:
    """Points the environment at production's outputs for the nodes it reuses (no data copied),
    and takes over production's record of the unchanged rules checked there."""
    if reused:
        store.record_outputs(env, reused)
    rules = {
        rule: entry
        for rule, entry in store.read_state(PROD).rules.items()
        if entry.get("fingerprint") == prints.get(rule)
    }
    if rules:
        store.record_rules(env, rules)


def mark_applied(store: Store, env: str, saved: planning.Plan) -> None:
    config = planning.read_env_config(store, env) or {}
    now = utc_now()
    config.update(
        {
            "name": env,
            "created_at": config.get("created_at", now),
            "last_accessed": now,
            "applied_at": now,
            "status": "applied",
            "nodes_changed": len(saved.to_execute),
        }
    )
    config.pop("schema_version", None)
    atomic_write_json(store.env_dir(env) / "env_config.json", config)


def record_reused_in_dagster(project: Project, env: str, reused: Mapping[str, Pointer]) -> None:
    """Records reused production outputs as materialisations of the environment's partition,
    so the Dagster UI shows them as present there."""
    if not reused:
        return
    import dagster as dg

    from seeknal_dagster.dagster_defs import asset_key, ensure_instance, ensure_partition

    instance = ensure_instance(project)
    ensure_partition(instance, env)
    for node_id, pointer in reused.items():
        instance.report_runless_asset_event(
            dg.AssetMaterialization(
                asset_key=asset_key(node_id),
                partition=env,
                description="Reused from production (same fingerprint); no data copied.",
                metadata={
                    "dagster/row_count": pointer.rows,
                    "seeknal/reused_from": PROD,
                    "seeknal/snapshot": dg.MetadataValue.path(str(store_path(project, pointer))),
                },
            )
        )


def store_path(project: Project, pointer: Pointer) -> Path:
    return project.target / pointer.snapshot


# --- promote and rollback --------------------------------------------------------------------


def promote(
    project: Project,
    store: Store,
    prints: Mapping[str, str],
    source: str,
    target: str,
    force: bool,
) -> tuple[list[str], bool]:
    """Makes `target` exactly `source` in one atomic step.

    Returns:
        The exposures re-exported, and whether the target's state switched (False when it was
        already exactly the source, so no rollback point was kept).

    Raises:
        PlanError: the source is not applied, its plan is stale, or production moved.
    """
    require_existing(store, source)
    if source == PROD:
        raise PlanError(
            "production cannot be promoted. Fix: promote an environment, e.g. `seeknal promote dev`"
        )
    validate_env_name(target)
    if target == source:
        raise PlanError(f"cannot promote '{source}' into itself")
    config = planning.read_env_config(store, source) or {}
    if config.get("status") not in ("applied", "promoted"):
        raise PlanError(
            f"environment '{source}' is {config.get('status', 'not planned')}, not "
            f"applied. Fix: run `seeknal run --env {source}` first"
        )
    saved = planning.load(store, source)
    if saved.project_fingerprint != planning.project_fingerprint(prints) and not force:
        raise PlanError(
            f"the plan of '{source}' is stale: the project changed since it was "
            f"planned. Fix: run `seeknal plan {source}` and `seeknal run --env "
            f"{source}` again, or pass --force"
        )
    state = store.read_state(source)
    previous = store.read_state(target)
    # NOTE: a promotion killed after its switch left `target` already equal to `source`; that is
    # not production moving, and switching again would record a rollback point equal to the
    # state itself. Promoting again only finishes the exports and links.
    switched = previous.pointers == state.pointers
    if target == PROD and not force and not switched:
        moved = _production_moves(store, saved)
        if moved:
            raise PlanError(
                f"production moved since '{source}' was planned: "
                f"{'; '.join(moved[:5])}. Fix: run `seeknal plan {source}` and "
                f"`seeknal run --env {source}` again, or pass --force"
            )

    missing = [
        n
        for n in prints
        if not isinstance(project.nodes[n], RuleSpec)
        and not store.is_current(state.pointers.get(n), prints[n])
    ]
    if missing and not force:
        raise PlanError(
            f"environment '{source}' is incomplete: no current output for "
            f"{', '.join(missing[:5])}. Fix: run `seeknal run --env {source}`"
        )

    if not switched:
        new_state = EnvState(
            target, previous.version, previous.updated_at, dict(state.pointers), dict(state.rules)
        )
        checkpoint("promote:before_switch")
        store.write_state(new_state, keep_history=True)
    checkpoint("promote:after_switch")
    exported = sync_exports(project, store, target)
    checkpoint("promote:after_exports")
    store.relink_all(target, prune=True)
    if target != PROD:
        _copy_plan(store, source, target)
    _set_status(store, source, "promoted", promoted_to=target)
    return exported, not switched


def _production_moves(store: Store, saved: planning.Plan) -> list[str]:
    baseline = saved.baseline_fingerprints or {}
    now = {n: p.fingerprint for n, p in store.read_state(PROD).pointers.items()}
    moved = [f"{n} was rebuilt" for n in sorted(now) if n in baseline and baseline[n] != now[n]]
    moved += [f"{n} was added" for n in sorted(now) if n not in baseline]
    moved += [f"{n} was removed" for n in sorted(baseline) if n not in now]
    return moved


def rollback(project: Project, store: Store, env: str) -> int:
    """Restores the environment's previous pointer file; returns the version restored.

    Raises:
        PlanError: no such environment, or nothing to roll back to.
    """
    require_existing(store, env)
    history = sorted(store.history_dir(env).glob("*.json"))
    if not history:
        raise PlanError(
            f"'{env}' has no earlier state to roll back to (nothing was promoted into it)"
        )
    document = read_json(history[-1], "rollback point")
    if document is None:
        raise PlanError(f"rollback point {history[-1]} vanished; try again")
    pointers = {n: Pointer.from_json(p) for n, p in document["nodes"].items()}
    rules = {str(k): dict(v) for k, v in (document.get("rules") or {}).items()}
    current = store.read_state(env)
    restored = EnvState(env, current.version, current.updated_at, pointers, rules)
    store.write_state(restored, keep_history=False)
    # NOTE: the rolled-back-from state is kept as a rollback point too (roll forward).
    atomic_write_json(
        store.history_dir(env) / f"{current.version:08d}.rolledback.json", current.to_json()
    )
    history[-1].unlink()
    finish_switch(project, store, env)
    return int(document.get("version", 0))


def finish_switch(project: Project, store: Store, env: str) -> list[str]:
    """Brings what derives from the environment's pointer file in line with it: the exported
    files of its exposures, then its `cache/` links. Returns the exposures re-exported.

    Idempotent and cheap when nothing is out of line, so a command that takes the environment's
    writer lock can call it first to finish a promotion or rollback that was killed after its
    switch.
    """
    exported = sync_exports(project, store, env)
    store.relink_all(env, prune=True)
    return exported


def sync_exports(project: Project, store: Store, env: str) -> list[str]:
    """Re-exports every exposure whose exported file is not its current snapshot's export.

    Idempotent: the export record (kept by every export, see `Store.record_exports`) lets an
    interrupted promotion finish on the next command; a file changed since its export (a file
    identity that differs from the record) is exported again.
    """
    state = store.read_state(env)
    record = store.export_record(env)
    done: dict[str, dict[str, Any] | None] = {}
    for node_id, pointer in state.pointers.items():
        spec = project.nodes.get(node_id)
        if not isinstance(spec, ExposureSpec):
            continue
        destination = store.export_path(env, spec.path, project.root)
        if record.get(node_id) == store.export_entry(pointer.snapshot, destination):
            continue
        _export(store.target / pointer.snapshot, spec, destination)
        done[node_id] = store.export_entry(pointer.snapshot, destination)
    if done:
        store.record_exports(env, done)
    return list(done)


def _export(snapshot: Path, spec: ExposureSpec, destination: Path) -> None:
    from seeknal_dagster import engine

    if spec.format == "parquet":
        engine.export(None, snapshot, spec.format, destination)
        return
    con = engine.connect(threads=2)
    try:
        engine.export(con, snapshot, spec.format, destination)
    finally:
        con.close()


def _copy_plan(store: Store, source: str, target: str) -> None:
    for name in ("plan.json", "manifest.json"):
        document = read_json(store.env_dir(source) / name, name)
        if document is None:
            continue
        document.pop("schema_version", None)
        if name == "plan.json":
            document["environment"] = target
        atomic_write_json(store.env_dir(target) / name, document)
    _set_status(store, target, "applied")


def _set_status(store: Store, env: str, status: str, **extra: Any) -> None:
    config = planning.read_env_config(store, env) or {}
    config.pop("schema_version", None)
    now = utc_now()
    config.setdefault("name", env)
    config.setdefault("created_at", now)
    config.update(status=status, last_accessed=now, **extra)
    atomic_write_json(store.env_dir(env) / "env_config.json", config)


# --- list, delete, gc ------------------------------------------------------------------------


def list_environments(store: Store) -> list[EnvInfo]:
    folder = store.target / "environments"
    if not folder.is_dir():
        return []
    rows = []
    for path in sorted(folder.iterdir()):
        config = read_json(path / "env_config.json", "environment config")
        if config is None:
            continue
        status = config.get("status", "planned")
        if _expired(config):
            status = "expired"
        rows.append(
            EnvInfo(
                path.name,
                config.get("created_at", ""),
                config.get("last_accessed", ""),
                status,
                int(config.get("nodes_changed", 0)),
            )
        )
    return rows


def _expired(config: Mapping[str, Any]) -> bool:
    try:
        last = datetime.strptime(config.get("last_accessed", ""), "%Y-%m-%dT%H:%M:%SZ")
    except ValueError:
        return False
    ttl = float(config.get("ttl_days") or 7)
    return datetime.now(UTC).replace(tzinfo=None) - last > timedelta(days=ttl)


def delete(store: Store, env: str) -> None:
    """Removes one environment's folder (its pointers, plan and links), never production."""
    check_new_name(env)
    require_existing(store, env)
    with store.environment_lock(env, f"seeknal env delete {env}"):
        shutil.rmtree(store.env_dir(env))


def gc(store: Store) -> tuple[list[str], int, int]:
    """Deletes expired environments, then snapshots nothing points to.

    Returns:
        The environments removed, the snapshot files removed and the bytes freed.
    """
    removed_envs = []
    for info in list_environments(store):
        if info.status == "expired":
            with store.environment_lock(info.name, "seeknal env gc"):
                shutil.rmtree(store.env_dir(info.name))
            removed_envs.append(info.name)

    referenced: set[str] = set()
    for env in [PROD] + [info.name for info in list_environments(store)]:
        referenced |= {p.snapshot for p in store.read_state(env).pointers.values()}
    for history in (store.target / "state" / "history").glob("*/*.json"):
        document = read_json(history, "rollback point") or {}
        referenced |= {p.get("snapshot") for p in document.get("nodes", {}).values()}

    files, freed = 0, 0
    # NOTE: a run in progress writes its snapshot before pointing at it; snapshots younger
    # than an hour are left alone so gc never deletes one that is about to be referenced.
    young = datetime.now(UTC).timestamp() - 3600
    with store.environment_lock(PROD, "seeknal env gc"):
        for snapshot in (store.target / "snapshots").glob("*/*/*.parquet"):
            relative = snapshot.relative_to(store.target).as_posix()
            if relative not in referenced and snapshot.stat().st_mtime < young:
                freed += snapshot.stat().st_size
                snapshot.unlink()
                files += 1
        # Temporary files of writes that were killed half-way (never read by anything).
        for leftover in store.target.glob("**/.*.tmp-*"):
            if leftover.is_file() and leftover.stat().st_mtime < young:
                freed += leftover.stat().st_size
                leftover.unlink()
                files += 1
    return removed_envs, files, freed
