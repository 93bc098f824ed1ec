"""Specs -> Dagster definitions: one asset per node, checks, env partitions, schedules, the instance.

Every asset materialisation, whether started by `seeknal run`, the UI or a schedule, goes through
`materialize_node`, so all three write the same snapshots, pointers and links. Environments are
partitions of one dynamic partitions definition; the partition key picks the pointer file.
Checks come from two places: rule nodes (their own check steps) and what a node file declares
(columns and types, entity keys), evaluated in the node's own step right after its output is
written, over that output.
"""

import logging
import os
import re
import time
import warnings
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dagster as dg
from dagster_duckdb import DuckDBResource

from seeknal_dagster import engine, schemas
from seeknal_dagster.errors import SeeknalError
from seeknal_dagster.io_manager import SeeknalIOManager
from seeknal_dagster.manifest import fingerprints, node_entry
from seeknal_dagster.project import Project, find_project_root, load_project
from seeknal_dagster.specs import (
    Column,
    ExposureSpec,
    FeatureGroupSpec,
    NodeSpec,
    RuleCheck,
    RuleSpec,
    SourceSpec,
)
from seeknal_dagster.storage import (
    PROD,
    EnvState,
    Pointer,
    Store,
    atomic_write_bytes,
    utc_now,
)

if TYPE_CHECKING:
    import duckdb

# NOTE: partitioned asset checks are a Dagster preview feature; environments need them.
warnings.filterwarnings("ignore", category=dg.PreviewWarning)
warnings.filterwarnings("ignore", category=dg.BetaWarning)

logger = logging.getLogger(__name__)

ENV_PARTITIONS = dg.DynamicPartitionsDefinition(name="seeknal_env")
RUN_JOB = "seeknal_run"
IO_MANAGER_KEY = "seeknal_io_manager"
# Checks every node gets from what its file declares (see `builtin_checks`).
DECLARED_COLUMNS = "declared_columns"
KEYS_NOT_NULL = "entity_keys_not_null"
KEYS_UNIQUE = "entity_keys_unique"
BUILTIN_CHECKS = (DECLARED_COLUMNS, KEYS_NOT_NULL, KEYS_UNIQUE)
PREVIEW_ROWS = 5
PREVIEW_COLUMNS = 20
PREVIEW_WIDTH = 40
_TAG_KEY = re.compile(r"[^A-Za-z0-9_.-]")
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_|<>\[\]])")

# Dagster's executor that runs in process or in several processes as the run config says, but
# in process when it says nothing (a launch from the UI's Jobs page); `seeknal run` picks one.
_RUN_EXECUTOR = dg.ExecutorDefinition(
    name="seeknal_run_executor",
    config_schema=dg.Field(
        dg.multi_or_in_process_executor.config_schema.config_type,
        default_value={"in_process": {}},
    ),
    executor_creation_fn=dg.multi_or_in_process_executor.executor_creation_fn,
    requirements=dg.multi_or_in_process_executor.get_requirements,
    description="In process unless the run config asks for multiprocess (`seeknal run --parallel`).",
)


@cache
def _compiled(root: str) -> tuple[Project, dict[str, str]]:
    project = load_project(Path(root))
    return project, fingerprints(project)


def asset_key(node_id: str) -> dg.AssetKey:
    """The asset key of a node: `source.transactions` -> `["source", "transactions"]`."""
    return dg.AssetKey(node_id.split(".", 1))


def node_id_of(key: dg.AssetKey) -> str:
    return ".".join(key.path)


def seeknal_definitions(project_dir: str | Path | None = None) -> dg.Definitions:
    """The Dagster definitions of a Seeknal project, ready to merge with your own.

    Every YAML node becomes an asset partitioned by environment (`ENV_PARTITIONS`; `prod` is
    production). A Python asset downstream of a node receives the node's current output as a
    pandas DataFrame, a pyarrow Table or the parquet file's Path, as its parameter is annotated::

        defs = dg.Definitions.merge(seeknal_definitions(), dg.Definitions(assets=[my_asset]))

    Args:
        project_dir: the project folder; default $SEEKNAL_PROJECT_DIR, else the bundled example.

    Raises:
        DagsterInvariantViolationError: the project is invalid (the message lists every problem).
    """
    default = Path(__file__).resolve().parent.parent / "examples" / "fraud_detection"
    root = project_dir or os.environ.get("SEEKNAL_PROJECT_DIR") or default
    try:
        return build_definitions(find_project_root(explicit=Path(root)))
    except SeeknalError as error:
        raise dg.DagsterInvariantViolationError(
            f"seeknal project {root} is invalid:\n{error}"
        ) from None


def definitions_for_workspace() -> dg.Definitions:
    """The definitions `definitions.py` and generated workspaces load (see `seeknal_definitions`)."""
    return seeknal_definitions()


def build_definitions(root: str | Path) -> dg.Definitions:
    """Definitions for the project at `root`: assets, checks, the run job, schedules, resources.

    Raises:
        ProjectError: the project is invalid.
    """
    # NOTE: imported here because schedules.py builds on this module's keys and partitions.
    from seeknal_dagster.schedules import build_schedules

    project, prints = _compiled(str(Path(root).resolve()))
    plans = _plan_metadata(project)
    assets = [
        _asset(project, prints, spec, plans.get(node_id, {}))
        for node_id, spec in project.nodes.items()
        if not isinstance(spec, RuleSpec)
    ]
    checks = [
        _rule_check(project, prints, spec)
        for spec in project.nodes.values()
        if isinstance(spec, RuleSpec)
    ]
    run_job = dg.define_asset_job(
        RUN_JOB, selection=dg.AssetSelection.all(), executor_def=_RUN_EXECUTOR
    )
    schedule_jobs, schedules = build_schedules(project, prints)
    return dg.Definitions(
        assets=assets,
        asset_checks=checks,
        jobs=[run_job, *schedule_jobs],
        schedules=schedules,
        resources={
            "duckdb": DuckDBResource(database=":memory:"),
            IO_MANAGER_KEY: SeeknalIOManager(project_dir=str(project.root)),
        },
        # NOTE: UI launches, `dagster asset materialize` and schedules use this executor; without
        # it Dagster would start a spawned process per step, seconds of overhead for small nodes.
        executor=dg.in_process_executor,
    )


@cache
def run_job(root: str) -> dg.JobDefinition:
    """The job `seeknal run` executes; module-level so Dagster can rebuild it in step processes."""
    return build_definitions(root).resolve_job_def(RUN_JOB)


# --- what the UI shows -----------------------------------------------------------------------


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


def _static_metadata(
    spec: NodeSpec, fingerprint: str, plan_entries: Mapping[str, str]
) -> dict[str, Any]:
    metadata: dict[str, Any] = {"seeknal/file": spec.file, "seeknal/fingerprint": fingerprint}
    if spec.sql:
        metadata["seeknal/sql"] = dg.MetadataValue.md(f"```sql\n{spec.sql.strip()}\n```")
    declared = declared_columns(spec)
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
    metadata.update(plan_entries)
    return metadata


def _plan_metadata(project: Project) -> dict[str, dict[str, str]]:
    """node id -> {`seeknal/plan/<env>`: "CATEGORY - reasons"} from every saved plan."""
    from seeknal_dagster import plan as planning

    store = Store(project.target)
    entries: dict[str, dict[str, str]] = {}
    for plan_file in sorted(project.target.glob("environments/*/plan.json")):
        env = plan_file.parent.name
        try:
            saved = planning.load(store, env)
        except SeeknalError as error:
            logger.warning("plan of environment %s not shown in Dagster: %s", env, error)
            continue
        for change in saved.changes:
            text = change.category
            if change.reasons:
                text = f"{text} - {'; '.join(change.reasons)}"
            entries.setdefault(change.node, {})[f"seeknal/plan/{env}"] = text
    return entries


def declared_columns(spec: NodeSpec) -> tuple[Column, ...]:
    """The columns a node file promises: a source's `columns`/`schema`; a feature group's join
    keys, event time column and declared features."""
    if isinstance(spec, SourceSpec):
        return spec.columns
    if not isinstance(spec, FeatureGroupSpec):
        return ()
    features = {f.name: f for f in spec.features or ()}
    keys = [*spec.join_keys, *([spec.event_time_col] if spec.event_time_col else [])]
    columns = [features.pop(name, Column(name, None)) for name in dict.fromkeys(keys)]
    return (*columns, *features.values())


# --- assets ----------------------------------------------------------------------------------


def _asset(
    project: Project, prints: Mapping[str, str], spec: NodeSpec, plan_entries: Mapping[str, str]
) -> dg.AssetsDefinition:
    node_id = spec.id
    rule_names = {
        rule.name
        for rule in project.nodes.values()
        if isinstance(rule, RuleSpec) and rule.target == node_id
    }

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
        metadata=_static_metadata(spec, prints[node_id], plan_entries),
        io_manager_key=IO_MANAGER_KEY,
        check_specs=[c for c in _builtin_check_specs(spec) if c.name not in rule_names],
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
    """Runs one node for the run's environment, points that environment at the output and
    evaluates the node's declared checks over it."""
    started = time.perf_counter()
    env = context.partition_key if context.has_partition_key else PROD
    spec = project.nodes[node_id]
    store = Store(project.target)
    state = store.read_state(env)

    inputs: dict[str, Path] = {}
    for ref in spec.inputs:
        pointer = state.pointers.get(ref)
        if pointer is not None and pointer.blocked and pointer.fingerprint == prints[ref]:
            raise dg.Failure(
                description=(
                    f"{node_id}: input {ref} is not used because {pointer.blocked}. Fix: correct "
                    f"the data or the check, then run again (the failed output stays readable "
                    f"in target/{pointer.snapshot})"
                )
            )
        if not store.is_current(pointer, prints[ref]):
            raise dg.Failure(
                description=(
                    f"{node_id}: input {ref} has no up-to-date output in environment '{env}'. "
                    f"Fix: materialise {ref} first (or run `seeknal run --select +{spec.name}`)"
                )
            )
        inputs[ref] = store.target / pointer.snapshot

    staged = store.staging_path(node_id, prints[node_id])
    data_path = project.resolve_path(spec.path) if isinstance(spec, SourceSpec) else None
    selected = {key.name for key in context.selected_asset_check_keys}
    try:
        with duckdb.get_connection() as con:
            output = engine.execute_node(
                con, spec, inputs, {r: project.nodes[r] for r in spec.inputs}, staged, data_path
            )
            out_path, checksum = store.seal_snapshot(node_id, prints[node_id], staged)
            preview = preview_markdown(con, out_path)
            check_results = _builtin_check_results(con, spec, out_path, selected)
    except SeeknalError as error:
        staged.unlink(missing_ok=True)
        raise dg.Failure(description=str(error)) from None

    failed = [
        r for r in check_results if not r.passed and r.severity == dg.AssetCheckSeverity.ERROR
    ]
    pointer = Pointer(
        fingerprint=prints[node_id],
        snapshot=out_path.relative_to(store.target).as_posix(),
        rows=output.rows,
        bytes=out_path.stat().st_size,
        checksum=checksum,
        columns=output.columns,
        built_at=utc_now(),
        run_id=context.run.run_id,
        node=node_entry(spec, prints[node_id], _derived_columns(project, spec, state, output)),
        # An output that failed a blocking check is kept for inspection but never used.
        blocked="; ".join(f"check {r.check_name} failed" for r in failed),
    )
    try:
        store.record_outputs(env, {node_id: pointer})
    except SeeknalError as error:
        raise dg.Failure(description=f"{node_id}: {error}") from None
    if isinstance(spec, ExposureSpec) and not pointer.blocked:
        # NOTE: exported after the pointer moved, so an export never shows data the
        # environment does not point at; the record lets the next command repair a kill here.
        destination = store.export_path(env, spec.path, project.root)
        with duckdb.get_connection() as con:
            engine.export(con, out_path, spec.format, destination)
        store.record_exports(env, {node_id: store.export_entry(pointer.snapshot, destination)})
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": output.rows,
            "dagster/column_schema": dg.TableSchema(
                columns=[dg.TableColumn(name, type_name) for name, type_name in output.columns]
            ),
            "seeknal/environment": env,
            "seeknal/output": dg.MetadataValue.path(str(store.cache_path(env, node_id))),
            "seeknal/snapshot": dg.MetadataValue.path(str(out_path)),
            "seeknal/preview": dg.MetadataValue.md(preview),
            "seeknal/duration_s": round(time.perf_counter() - started, 3),
        },
        check_results=check_results,
    )


def preview_markdown(con: "duckdb.DuckDBPyConnection", snapshot: Path) -> str:
    """The first rows of a parquet file as a small markdown table (values cut to a short width)."""
    source = f"read_parquet({engine.file_literal(snapshot)})"
    names = [name for name, _ in engine.describe(con, f"SELECT * FROM {source}")]
    shown = names[:PREVIEW_COLUMNS]
    if not shown:
        return "*(no columns)*"
    select = ", ".join(engine.ident(name) for name in shown)
    rows = con.execute(f"SELECT {select} FROM {source} LIMIT {PREVIEW_ROWS}").fetchall()
    lines = [
        "| " + " | ".join(_cell(name) for name in shown) + " |",
        "|" + "---|" * len(shown),
        *("| " + " | ".join(_cell(value) for value in row) + " |" for row in rows),
    ]
    if not rows:
        lines.append("| " + " | ".join("" for _ in shown) + " |")
        lines.append("\n*(no rows)*")
    if len(names) > len(shown):
        lines.append(f"\n*{len(names) - len(shown)} more column(s) not shown*")
    return "\n".join(lines)


def _cell(value: object) -> str:
    text = "null" if value is None else " ".join(str(value).split())
    if len(text) > PREVIEW_WIDTH:
        text = text[: PREVIEW_WIDTH - 1] + "…"
    return _MARKDOWN_SPECIAL.sub(r"\\\1", text)


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


# --- checks ----------------------------------------------------------------------------------


def builtin_checks(spec: NodeSpec) -> list[str]:
    """Names of the checks a node's declarations give it (rules are checks of their own)."""
    names = [DECLARED_COLUMNS] if declared_columns(spec) else []
    if isinstance(spec, FeatureGroupSpec):
        names += [KEYS_NOT_NULL, KEYS_UNIQUE]
    return names


def check_keys(project: Project, node_ids: list[str] | tuple[str, ...]) -> list[dg.AssetCheckKey]:
    """Every check of the given nodes: the declared ones and those of the rules checking them."""
    wanted = set(node_ids)
    keys = [
        dg.AssetCheckKey(asset_key(node_id), name)
        for node_id in node_ids
        for name in builtin_checks(project.nodes[node_id])
    ]
    keys += [
        dg.AssetCheckKey(asset_key(spec.target), spec.name)
        for spec in project.nodes.values()
        if isinstance(spec, RuleSpec) and spec.target in wanted
    ]
    return list(dict.fromkeys(keys))


def _builtin_check_specs(spec: NodeSpec) -> list[dg.AssetCheckSpec]:
    key = asset_key(spec.id)
    descriptions = {
        DECLARED_COLUMNS: (
            f"The columns {spec.file} declares are in the output, with the declared types."
        ),
        KEYS_NOT_NULL: "No entity join key is null.",
        KEYS_UNIQUE: "Join keys and event time identify one row (warns on duplicates).",
    }
    return [
        dg.AssetCheckSpec(
            name,
            asset=key,
            description=descriptions[name],
            blocking=name != KEYS_UNIQUE,
            partitions_def=ENV_PARTITIONS,
        )
        for name in builtin_checks(spec)
    ]


def _builtin_check_results(
    con: "duckdb.DuckDBPyConnection", spec: NodeSpec, snapshot: Path, selected: set[str]
) -> list[dg.AssetCheckResult]:
    """Evaluates the node's declared checks over its freshly written output."""
    results = []
    names = [name for name in builtin_checks(spec) if name in selected]
    if DECLARED_COLUMNS in names:
        passed, description, metadata = _declared_columns_outcome(con, spec, snapshot)
        results.append(
            dg.AssetCheckResult(
                check_name=DECLARED_COLUMNS,
                passed=passed,
                severity=dg.AssetCheckSeverity.ERROR,
                description=description,
                metadata=metadata,
            )
        )
    if isinstance(spec, FeatureGroupSpec):
        keys = list(spec.join_keys)
        unique_on = [*keys, *([spec.event_time_col] if spec.event_time_col else [])]
        for name, check, severity in (
            (KEYS_NOT_NULL, RuleCheck("null", tuple(keys)), dg.AssetCheckSeverity.ERROR),
            (KEYS_UNIQUE, RuleCheck("uniqueness", tuple(unique_on)), dg.AssetCheckSeverity.WARN),
        ):
            if name not in names:
                continue
            outcome = engine.run_check(con, check, spec.id, snapshot)
            results.append(
                dg.AssetCheckResult(
                    check_name=name,
                    passed=outcome.passed,
                    severity=severity,
                    description=outcome.description,
                    metadata={"columns": ", ".join(check.columns)},
                )
            )
    return results


def _declared_columns_outcome(
    con: "duckdb.DuckDBPyConnection", spec: NodeSpec, snapshot: Path
) -> tuple[bool, str, dict[str, Any]]:
    """Compares the declared columns with the output's, types in DuckDB's own spelling."""
    declared = declared_columns(spec)
    actual = dict(
        engine.describe(con, f"SELECT * FROM read_parquet({engine.file_literal(snapshot)})")
    )
    typed = {c.name: c.type for c in declared if c.type}
    expected: dict[str, str] = {}
    if typed:
        casts = ", ".join(f"CAST(NULL AS {t}) AS {engine.ident(n)}" for n, t in typed.items())
        expected = dict(engine.describe(con, f"SELECT {casts}"))

    missing = [c.name for c in declared if c.name not in actual]
    mismatched = [
        f"{name} (declared {type_name}, found {actual[name]})"
        for name, type_name in expected.items()
        if name in actual and actual[name] != type_name
    ]
    problems = []
    if missing:
        problems.append(f"missing column(s): {', '.join(missing)}")
    if mismatched:
        problems.append(f"type mismatch: {', '.join(mismatched)}")
    description = "; ".join(problems) or f"all {len(declared)} declared column(s) present"
    metadata = {
        "declared": dg.TableSchema(
            columns=[dg.TableColumn(c.name, expected.get(c.name, "any")) for c in declared]
        ),
        "missing": len(missing),
        "type_mismatches": len(mismatched),
    }
    return not problems, description, metadata


def _rule_check(
    project: Project, prints: Mapping[str, str], spec: RuleSpec
) -> dg.AssetChecksDefinition:
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
        if failed_error:
            # The checked output must not feed anything, now or in a later run.
            store.block(env, target, pointer.snapshot, f"rule {spec.id} failed")
        # The rule as checked becomes part of the environment's baseline for later plans.
        store.record_rules(env, {spec.id: node_entry(spec, prints[spec.id])})
        return dg.AssetCheckResult(
            passed=not failed_error and not failed_warn,
            severity=severity,
            description="; ".join(failed_error + failed_warn) or "all checks passed",
            metadata=metadata,
        )

    return _check


# --- the instance and the UI -----------------------------------------------------------------


def dagster_home(project: Project) -> Path:
    """$DAGSTER_HOME when set, else the project's `target/dagster/`."""
    home = os.environ.get("DAGSTER_HOME")
    return Path(home) if home else project.target / "dagster"


def ensure_instance(project: Project) -> dg.DagsterInstance:
    """The Dagster instance in `dagster_home(project)` (created on first use)."""
    folder = dagster_home(project)
    folder.mkdir(parents=True, exist_ok=True)
    config = folder / "dagster.yaml"
    if not config.exists():
        config.write_text("telemetry:\n  enabled: false\n")
    return dg.DagsterInstance.from_config(str(folder))


def ensure_partition(instance: dg.DagsterInstance, env: str) -> None:
    if not instance.has_dynamic_partition(ENV_PARTITIONS.name, env):
        instance.add_dynamic_partitions(ENV_PARTITIONS.name, [env])


def workspace_file(project: Project) -> Path:
    """The workspace `seeknal ui` serves: the project's own `workspace.yaml`, else a generated
    one loading the project's `definitions.py`, else this package's definitions."""
    own = project.root / "workspace.yaml"
    if own.is_file():
        return own
    user_defs = project.root / "definitions.py"
    if user_defs.is_file():
        target = (
            f"  - python_file:\n      relative_path: {_yaml_text(str(user_defs))}\n"
            f"      working_directory: {_yaml_text(str(project.root))}\n"
        )
    else:
        target = (
            f"  - python_module:\n      module_name: {__name__}\n"
            "      attribute: definitions_for_workspace\n"
            f"      location_name: {_yaml_text(project.name)}\n"
        )
    path = project.target / "dagster" / "workspace.yaml"
    atomic_write_bytes(path, f"# Written by `seeknal ui`.\nload_from:\n{target}".encode())
    return path


def _yaml_text(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"
