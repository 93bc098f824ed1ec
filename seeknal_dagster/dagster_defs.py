"""Specs -> Dagster definitions: one asset per node, rules as asset checks, env partitions.

Every asset materialisation, whether started by `seeknal run`, the UI or a schedule, goes through
`materialize_node`, so all three write the same snapshots, pointers and links. Environments are
partitions of one dynamic partitions definition; the partition key picks the pointer file.
"""

import os
import re
import time
import warnings
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

import dagster as dg
from dagster_duckdb import DuckDBResource

from seeknal_dagster import engine, schemas
from seeknal_dagster.errors import ExecutionError, SeeknalError
from seeknal_dagster.manifest import fingerprints, node_entry
from seeknal_dagster.project import Project, load_project
from seeknal_dagster.specs import (
    ExposureSpec,
    NodeSpec,
    RuleSpec,
    SourceSpec,
)
from seeknal_dagster.storage import PROD, EnvState, Pointer, Store, file_checksum, utc_now

# NOTE: partitioned asset checks are a Dagster preview feature; environments need them.
warnings.filterwarnings("ignore", category=dg.PreviewWarning)
warnings.filterwarnings("ignore", category=dg.BetaWarning)

ENV_PARTITIONS = dg.DynamicPartitionsDefinition(name="seeknal_env")
RUN_JOB = "seeknal_run"
_TAG_KEY = re.compile(r"[^A-Za-z0-9_.-]")


@cache
def _compiled(root: str) -> tuple[Project, dict[str, str]]:
    project = load_project(Path(root))
    return project, fingerprints(project)


def asset_key(node_id: str) -> dg.AssetKey:
    return dg.AssetKey(node_id.split(".", 1))


def node_id_of(key: dg.AssetKey) -> str:
    return ".".join(key.path)


def build_definitions(root: str | Path, threads: int | None = None) -> dg.Definitions:
    """Definitions for the project at `root`: assets, checks, the run job, resources.

    Raises:
        ProjectError: the project is invalid.
    """
    project, prints = _compiled(str(Path(root).resolve()))
    assets = [
        _asset(project, prints, spec)
        for node_id, spec in project.nodes.items()
        if not isinstance(spec, RuleSpec)
    ]
    checks = [
        _rule_check(project, spec) for spec in project.nodes.values() if isinstance(spec, RuleSpec)
    ]
    run_job = dg.define_asset_job(
        RUN_JOB,
        selection=dg.AssetSelection.all(),
        partitions_def=ENV_PARTITIONS,
        executor_def=dg.multi_or_in_process_executor,
    )
    config: dict[str, Any] = {"threads": threads} if threads else {}
    return dg.Definitions(
        assets=assets,
        asset_checks=checks,
        jobs=[run_job],
        resources={"duckdb": DuckDBResource(database=":memory:", connection_config=config)},
        executor=dg.in_process_executor,
    )


@cache
def run_job(root: str, threads: int | None = None) -> dg.JobDefinition:
    """The job `seeknal run` executes; module-level so Dagster can rebuild it in step processes."""
    return build_definitions(root, threads).resolve_job_def(RUN_JOB)


def _owners(owner: str) -> list[str]:
    if not owner:
        return []
    if "@" in owner:
        return [owner]
    return [owner if owner.startswith("team:") else f"team:{_TAG_KEY.sub('_', owner)}"]


def _tags(tags: tuple[str, ...]) -> dict[str, str]:
    return {_TAG_KEY.sub("_", tag)[:63]: "" for tag in tags if tag}


def _kinds(spec: NodeSpec) -> set[str]:
    if isinstance(spec, SourceSpec):
        return {"duckdb", "csv" if spec.format == "csv" else spec.format}
    return {"duckdb", "parquet"}


def _static_metadata(spec: NodeSpec, fingerprint: str) -> dict[str, Any]:
    metadata: dict[str, Any] = {"seeknal/file": spec.file, "seeknal/fingerprint": fingerprint}
    if spec.sql:
        metadata["seeknal/sql"] = dg.MetadataValue.md(f"```sql\n{spec.sql.strip()}\n```")
    declared = getattr(spec, "columns", None) or getattr(spec, "features", None) or ()
    if declared:
        metadata["dagster/column_schema"] = dg.TableSchema(
            columns=[
                dg.TableColumn(c.name, c.type or "?", description=c.description or None)
                for c in declared
            ]
        )
    if isinstance(spec, SourceSpec):
        metadata["seeknal/data_file"] = spec.path
    if isinstance(spec, ExposureSpec):
        metadata["seeknal/export_path"] = spec.path
    return metadata


def _asset(project: Project, prints: Mapping[str, str], spec: NodeSpec) -> dg.AssetsDefinition:
    node_id = spec.id

    @dg.asset(
        key=asset_key(node_id),
        deps=[asset_key(ref) for ref in spec.inputs],
        group_name=f"{spec.kind}s",
        description=spec.description or None,
        owners=_owners(spec.owner),
        tags=_tags(spec.tags),
        kinds=_kinds(spec),
        code_version=prints[node_id],
        partitions_def=ENV_PARTITIONS,
        metadata=_static_metadata(spec, prints[node_id]),
    )
    def _node_asset(context: dg.AssetExecutionContext, duckdb: DuckDBResource):
        return materialize_node(context, project, prints, node_id, duckdb)

    return _node_asset


def materialize_node(
    context: dg.AssetExecutionContext,
    project: Project,
    prints: Mapping[str, str],
    node_id: str,
    duckdb: DuckDBResource,
) -> dg.MaterializeResult:
    """Runs one node for the run's environment and points that environment at the output."""
    started = time.perf_counter()
    env = context.partition_key if context.has_partition_key else PROD
    spec = project.nodes[node_id]
    store = Store(project.target)
    state = store.read_state(env)

    inputs: dict[str, Path] = {}
    for ref in spec.inputs:
        pointer = state.pointers.get(ref)
        if not store.is_current(pointer, prints[ref]):
            raise dg.Failure(
                description=(
                    f"{node_id}: input {ref} has no up-to-date output in environment '{env}'. "
                    f"Fix: materialise {ref} first (or run `seeknal run --select +{spec.name}`)"
                )
            )
        inputs[ref] = store.target / pointer.snapshot

    out_path = store.snapshot_path(node_id, prints[node_id])
    data_path = project.resolve_path(spec.path) if isinstance(spec, SourceSpec) else None
    try:
        with duckdb.get_connection() as con:
            output = engine.execute_node(
                con, spec, inputs, {r: project.nodes[r] for r in spec.inputs}, out_path, data_path
            )
            if isinstance(spec, ExposureSpec):
                engine.export(
                    con, out_path, spec.format, store.export_path(env, spec.path, project.root)
                )
    except ExecutionError as error:
        raise dg.Failure(description=str(error)) from None

    pointer = Pointer(
        fingerprint=prints[node_id],
        snapshot=out_path.relative_to(store.target).as_posix(),
        rows=output.rows,
        bytes=out_path.stat().st_size,
        checksum=file_checksum(out_path),
        columns=output.columns,
        built_at=utc_now(),
        run_id=context.run_id,
        node=node_entry(spec, prints[node_id], _derived_columns(project, spec, state, output)),
    )
    store.record_outputs(env, {node_id: pointer})
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": output.rows,
            "dagster/column_schema": dg.TableSchema(
                columns=[dg.TableColumn(name, type_name) for name, type_name in output.columns]
            ),
            "seeknal/environment": env,
            "seeknal/output": dg.MetadataValue.path(str(store.cache_path(env, node_id))),
            "seeknal/snapshot": dg.MetadataValue.path(str(out_path)),
            "seeknal/duration_s": round(time.perf_counter() - started, 3),
        }
    )


def _derived_columns(
    project: Project, spec: NodeSpec, state: EnvState, output: engine.NodeOutput
) -> list[tuple[str, str | None]] | None:
    """The node's columns as the plan derives them, recorded so later plans compare like with
    like (a source's are exactly what was loaded)."""
    if isinstance(spec, SourceSpec):
        return list(output.columns)
    inputs = {ref: state.pointers[ref].derived_columns for ref in spec.inputs}
    try:
        return schemas.node_columns(project, spec, inputs)
    except SeeknalError:
        return None


def _rule_check(project: Project, spec: RuleSpec) -> dg.AssetChecksDefinition:
    target = spec.target
    blocking = any(check.severity == "error" for check in spec.checks)

    @dg.asset_check(
        asset=asset_key(target),
        name=spec.name,
        description=spec.description or f"{len(spec.checks)} check(s) from {spec.file}",
        blocking=blocking,
        partitions_def=ENV_PARTITIONS,
    )
    def _check(context: dg.AssetCheckExecutionContext, duckdb: DuckDBResource):
        env = context.partition_key if context.has_partition_key else PROD
        store = Store(project.target)
        pointer = store.read_state(env).pointers.get(target)
        if pointer is None:
            raise dg.Failure(description=f"{spec.id}: {target} has no output in '{env}' to check")
        snapshot = store.target / pointer.snapshot
        failed_error: list[str] = []
        failed_warn: list[str] = []
        metadata: dict[str, Any] = {}
        with duckdb.get_connection() as con:
            for index, check in enumerate(spec.checks):
                outcome = engine.run_check(con, check, target, snapshot)
                label = f"{index + 1}. {check.type}({', '.join(check.columns)})"
                metadata[label] = f"{'PASS' if outcome.passed else 'FAIL'}: {outcome.description}"
                if not outcome.passed:
                    (failed_error if check.severity == "error" else failed_warn).append(
                        f"{check.type}: {outcome.description}"
                    )
        severity = dg.AssetCheckSeverity.ERROR if failed_error else dg.AssetCheckSeverity.WARN
        return dg.AssetCheckResult(
            passed=not failed_error and not failed_warn,
            severity=severity,
            description="; ".join(failed_error + failed_warn) or "all checks passed",
            metadata=metadata,
        )

    return _check


def ensure_instance(project: Project) -> dg.DagsterInstance:
    """The Dagster instance in $DAGSTER_HOME, else in `target/dagster/` (created on first use)."""
    home = os.environ.get("DAGSTER_HOME")
    folder = Path(home) if home else project.target / "dagster"
    folder.mkdir(parents=True, exist_ok=True)
    config = folder / "dagster.yaml"
    if not config.exists():
        config.write_text("telemetry:\n  enabled: false\n")
    instance = dg.DagsterInstance.from_config(str(folder))
    return instance


def ensure_partition(instance: dg.DagsterInstance, env: str) -> None:
    if not instance.has_dynamic_partition(ENV_PARTITIONS.name, env):
        instance.add_dynamic_partitions(ENV_PARTITIONS.name, [env])


def definitions_for_workspace() -> dg.Definitions:
    """The definitions `definitions.py` exposes: the project in $SEEKNAL_PROJECT_DIR."""
    from seeknal_dagster.project import find_project_root

    default = Path(__file__).resolve().parent.parent / "examples" / "fraud_detection"
    root = os.environ.get("SEEKNAL_PROJECT_DIR") or str(default)
    try:
        return build_definitions(find_project_root(explicit=Path(root)))
    except SeeknalError as error:
        raise dg.DagsterInvariantViolationError(
            f"seeknal project {root} is invalid:\n{error}"
        ) from None
