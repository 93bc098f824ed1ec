"""`seeknal run`: decide what is stale, execute it through Dagster, and report per node.

Deciding what to run is pure (`plan_run`); only `execute` imports Dagster, so a run with nothing
to do answers without starting it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from seeknal_dagster.errors import SeeknalError
from seeknal_dagster.graph import select
from seeknal_dagster.project import Project
from seeknal_dagster.specs import RuleSpec
from seeknal_dagster.storage import PROD, EnvState, Store

logger = logging.getLogger(__name__)

SUCCESS, FAILED, SKIPPED, CACHED = "SUCCESS", "FAILED", "SKIPPED", "CACHED"
# Modules each forkserver step process inherits instead of importing them anew.
# The storage modules are what a step needs to reopen the instance; importing them in each step
# process costs about 0.4 s. Modules missing from a Dagster version are skipped by the forkserver.
PRELOAD_MODULES = [
    "dagster",
    "duckdb",
    "dagster_duckdb",
    "sqlalchemy",
    "alembic.command",
    "dagster._core.instance.factory",
    "dagster._core.storage.sqlite_storage",
    "dagster._core.storage.runs.sqlite.sqlite_run_storage",
    "dagster._core.storage.event_log.sqlite.sqlite_event_log",
    "dagster._core.storage.schedules.sqlite.sqlite_schedule_storage",
    "upath",
    "fsspec",
    "dotenv",
    "seeknal_dagster.dagster_defs",
    "seeknal_dagster.warm",
]
# The DuckDB memory budget of a whole run, split between concurrent steps.
BUDGET_VARIABLE = "SEEKNAL_MEMORY_BUDGET"
WARM_ROOT_VARIABLE = "SEEKNAL_WARM_ROOT"


@dataclass(frozen=True)
class RunOptions:
    full: bool = False
    parallel: bool = False
    max_workers: int | None = None
    select: tuple[str, ...] = ()
    env: str = PROD


@dataclass(frozen=True)
class RunPlan:
    """Which nodes a run executes and which it reuses, in topological order."""

    to_run: tuple[str, ...]
    cached: tuple[str, ...]
    selected: tuple[str, ...]
    layers: tuple[tuple[str, ...], ...] = ()


@dataclass
class NodeResult:
    node_id: str
    status: str
    duration: float = 0.0
    rows: int | None = None
    error: str = ""


@dataclass
class CheckResult:
    rule: str
    target: str
    passed: bool
    severity: str
    description: str


@dataclass
class RunReport:
    env: str
    results: dict[str, NodeResult]
    checks: list[CheckResult] = field(default_factory=list)
    duration: float = 0.0
    run_id: str = ""
    max_workers: int = 1
    interrupted: bool = False

    @property
    def failed(self) -> bool:
        return any(r.status in (FAILED, SKIPPED) for r in self.results.values()) or any(
            not c.passed and c.severity == "ERROR" for c in self.checks
        )

    def count(self, status: str) -> int:
        return sum(1 for r in self.results.values() if r.status == status)


def _check_inputs_available(
    project: Project, prints: Mapping[str, str], state: EnvState, store: Store, to_run: tuple
) -> None:
    """Refuses, before anything runs, a selection whose nodes need an input that neither runs
    nor has an up-to-date output."""
    running = set(to_run)
    for node_id in to_run:
        for ref in project.nodes[node_id].inputs:
            if ref not in running and not store.is_current(state.pointers.get(ref), prints[ref]):
                name = node_id.split(".", 1)[1]
                raise SeeknalError(
                    f"{node_id} needs {ref}, which has no up-to-date output and "
                    f"is not selected. Fix: select it too, e.g. --select +{name}"
                )


def default_workers(project: Project, requested: int | None) -> int:
    """`--max-workers`, else the project's `max_workers`, else min(cpu_count, 8)."""
    return max(1, requested or project.max_workers or min(os.cpu_count() or 1, 8))


def plan_run(
    project: Project,
    prints: Mapping[str, str],
    state: EnvState,
    store: Store,
    options: RunOptions,
) -> RunPlan:
    """What an incremental (or `--full`) run of the selection executes. Pure apart from stat()."""
    graph = project.graph
    data_nodes = [n for n in graph.topological_order if not isinstance(project.nodes[n], RuleSpec)]
    selected = set(data_nodes)
    if options.select:
        chosen = select(graph, options.select, {n: s.tags for n, s in project.nodes.items()})
        # A selected rule means: re-check its target.
        selected = {
            project.nodes[n].inputs[0] if isinstance(project.nodes[n], RuleSpec) else n
            for n in chosen
        }
    if options.full:
        stale = set(selected)
    else:
        stale = {n for n in data_nodes if not store.is_current(state.pointers.get(n), prints[n])}
        stale |= graph.downstream(stale)
        stale = {n for n in stale if not isinstance(project.nodes[n], RuleSpec)}
        # A new or edited rule is checked by re-running the node it checks (same output).
        stale |= {
            spec.target
            for rule, spec in project.nodes.items()
            if isinstance(spec, RuleSpec)
            and (state.rules.get(rule) or {}).get("fingerprint") != prints[rule]
        }
    to_run = tuple(n for n in data_nodes if n in stale and n in selected)
    _check_inputs_available(project, prints, state, store, to_run)
    cached = tuple(n for n in data_nodes if n in selected and n not in stale)
    layers = tuple(
        tuple(n for n in layer if n in selected)
        for layer in graph.layers
        if any(n in selected for n in layer)
    )
    return RunPlan(to_run, cached, tuple(n for n in data_nodes if n in selected), layers)


def execute(
    project: Project,
    plan: RunPlan,
    options: RunOptions,
    extra_tags: Mapping[str, str] | None = None,
    progress: Callable[[int, int, list[str]], None] | None = None,
) -> RunReport:
    """Runs `plan.to_run` through Dagster and collects per-node results.

    Sequential runs use the in-process executor; `--parallel` uses the multiprocess executor with
    forkserver and preloaded modules, at most `max_workers` steps at once.

    Args:
        progress: called from a background thread while the run goes on with (steps done,
            steps in total, nodes running now).
    """
    import dagster as dg

    from seeknal_dagster.dagster_defs import asset_key, ensure_instance, ensure_partition

    workers = default_workers(project, options.max_workers)
    widest = max((len([n for n in layer if n in plan.to_run]) for layer in plan.layers), default=1)
    concurrent = min(workers, widest) if options.parallel else 1
    _step_settings(project, concurrent)
    if options.parallel:
        executor = {
            "multiprocess": {
                "max_concurrent": workers,
                "start_method": {"forkserver": {"preload_modules": PRELOAD_MODULES}},
            }
        }
    else:
        executor = {"in_process": {}}

    log_level = "DEBUG" if logger.isEnabledFor(logging.DEBUG) else "WARNING"
    instance = ensure_instance(project)
    ensure_partition(instance, options.env)
    job = dg.build_reconstructable_job(
        "seeknal_dagster.dagster_defs",
        "run_job",
        reconstructable_args=(str(project.root),),
    )
    started = time.perf_counter()
    tags = {
        "dagster/partition": options.env,
        "seeknal/environment": options.env,
        "seeknal/invocation": secrets.token_hex(8),
        **(extra_tags or {}),
    }
    verbose = logger.isEnabledFor(logging.DEBUG)
    watcher = _Watcher(instance, tags["seeknal/invocation"], len(plan.to_run), progress)
    with (
        contextlib.nullcontext()
        if verbose
        else _stderr_to(project.target / "logs" / "dagster.log"),
        watcher,
    ):
        try:
            result = dg.execute_job(
                job,
                instance=instance,
                run_config={
                    "execution": {"config": executor},
                    # Dagster's own event lines would drown the report; they stay in the event log.
                    "loggers": {"console": {"config": {"log_level": log_level}}},
                },
                tags=tags,
                asset_selection=[asset_key(n) for n in plan.to_run],
            )
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception as error:
            # Dagster's own storage failed under the run (e.g. target/ removed meanwhile).
            logger.debug("the Dagster run failed", exc_info=True)
            raise SeeknalError(
                f"the run stopped inside Dagster: {type(error).__name__}: {error}. Fix: make sure "
                f"{project.target} stays in place and writable while a run goes on, then run "
                "again (finished nodes are kept)"
            ) from None
    report = collect(instance, result.run_id, plan, options.env)
    report.duration = time.perf_counter() - started
    report.max_workers = workers if options.parallel else 1
    return report


def _step_settings(project: Project, concurrent: int) -> None:
    """Settings every step process inherits through the environment.

    NOTE: each step's DuckDB keeps every core (a step that runs alone, as most long ones end up
    doing, needs them all); memory is what is shared: a budget ($SEEKNAL_MEMORY_BUDGET) is split
    between the steps that can run at once, never below the default per step, and DuckDB spills
    to `target/tmp/` beyond it.
    """
    from seeknal_dagster import engine

    budget = _megabytes(os.environ.get(BUDGET_VARIABLE, engine.DEFAULT_MEMORY_LIMIT))
    # NOTE: no step gets less than the default: below it, joins like the example's enrichment
    # at 5M rows run out of memory instead of spilling (measured: 768 MB per step fails).
    floor = _megabytes(engine.DEFAULT_MEMORY_LIMIT)
    os.environ[engine.MEMORY_LIMIT_VARIABLE] = f"{max(floor, budget // max(1, concurrent))}MB"
    spill = project.target / "tmp" / "duckdb"
    spill.mkdir(parents=True, exist_ok=True)
    os.environ[engine.SPILL_VARIABLE] = str(spill)
    # The forkserver builds the run job once (see seeknal_dagster.warm) for every step it forks.
    os.environ[WARM_ROOT_VARIABLE] = str(project.root)


def _megabytes(text: str) -> int:
    """'1536MB' / '2GB' / '1.5 GiB' -> megabytes."""
    value = text.strip().upper().replace("IB", "B").replace(" ", "")
    for unit, factor in (("GB", 1024), ("MB", 1), ("KB", 1 / 1024)):
        if value.endswith(unit):
            return int(float(value[: -len(unit)]) * factor)
    return int(float(value) / (1024 * 1024))


@contextlib.contextmanager
def _stderr_to(path: Path) -> Iterator[None]:
    """Sends file descriptor 2 (ours and the step processes') to a log file for the run.

    Step processes print Dagster's engine lines straight to stderr; the report is the user's
    view, the full log stays in `target/logs/dagster.log` (and in Dagster's event log).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    sys.stderr.flush()
    saved = os.dup(2)
    with open(path, "wb") as log:
        os.dup2(log.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)


class _Watcher:
    """Follows a run's step events from a background thread and reports progress."""

    def __init__(
        self,
        instance,  # noqa: ANN001 - a DagsterInstance
        invocation: str,
        total: int,
        callback: Callable[[int, int, list[str]], None] | None,
    ):
        self.instance = instance
        self.invocation = invocation
        self.total = total
        self.callback = callback
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._follow, daemon=True)

    def __enter__(self) -> _Watcher:
        if self.callback is not None:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=2)

    def _follow(self) -> None:
        from dagster import DagsterEventType, RunsFilter

        from seeknal_dagster.dagster_defs import node_id_of

        run_id, cursor = None, None
        running: dict[str, str] = {}
        done = 0
        wanted = {
            DagsterEventType.STEP_START,
            DagsterEventType.STEP_SUCCESS,
            DagsterEventType.STEP_FAILURE,
            DagsterEventType.ASSET_MATERIALIZATION,
        }
        while not self._stop.wait(0.3):
            try:
                if run_id is None:
                    found = self.instance.get_run_records(
                        RunsFilter(tags={"seeknal/invocation": self.invocation}), limit=1
                    )
                    if not found:
                        continue
                    run_id = found[0].dagster_run.run_id
                connection = self.instance.get_records_for_run(run_id, cursor=cursor)
                cursor = connection.cursor
                for record in connection.records:
                    event = record.event_log_entry.dagster_event
                    if event is None or event.event_type not in wanted:
                        continue
                    if event.event_type == DagsterEventType.STEP_START:
                        running[event.step_key] = event.step_key.replace("__", ".")
                    elif event.event_type == DagsterEventType.ASSET_MATERIALIZATION:
                        key = event.event_specific_data.materialization.asset_key
                        running[event.step_key] = node_id_of(key)
                    else:
                        running.pop(event.step_key, None)
                        done += 1
                self.callback(min(done, self.total), self.total, sorted(set(running.values())))
            except Exception:  # progress is cosmetic; never let it break a run
                logger.debug("progress watcher failed", exc_info=True)
                return


def collect(instance, run_id: str, plan: RunPlan, env: str) -> RunReport:  # noqa: ANN001
    """Per-node status, time, rows and errors from the run's event log."""
    from seeknal_dagster.dagster_defs import BUILTIN_CHECKS, node_id_of

    results = {n: NodeResult(n, CACHED) for n in plan.cached}
    pending = {n: NodeResult(n, SKIPPED, error="an upstream node failed") for n in plan.to_run}
    checks: list[CheckResult] = []
    step_node: dict[str, str] = {}
    interrupted = False
    for record in instance.all_logs(run_id):
        event = record.dagster_event
        if event is None:
            continue
        kind = event.event_type_value
        if kind == "ASSET_MATERIALIZATION":
            materialization = event.event_specific_data.materialization
            node_id = node_id_of(materialization.asset_key)
            step_node[event.step_key] = node_id
            rows = materialization.metadata.get("dagster/row_count")
            result = pending.get(node_id)
            if result is not None:
                result.status = SUCCESS
                result.error = ""
                result.rows = int(rows.value) if rows is not None else None
        elif kind == "STEP_SUCCESS" and event.step_key in step_node:
            result = pending.get(step_node[event.step_key])
            if result is not None:
                result.duration = event.event_specific_data.duration_ms / 1000.0
        elif kind == "STEP_FAILURE":
            node_id = _node_of_step(event.step_key, plan.to_run)
            error = event.event_specific_data.error
            if error is not None and _is_interruption(error):
                interrupted = True
                if node_id in pending:
                    pending[node_id].error = "interrupted"
            elif node_id in pending:
                pending[node_id].status = FAILED
                pending[node_id].error = _failure_message(event)
        elif kind == "ASSET_CHECK_EVALUATION":
            evaluation = event.event_specific_data
            name = evaluation.check_name
            checks.append(
                CheckResult(
                    rule=name if name in BUILTIN_CHECKS else f"rule.{name}",
                    target=node_id_of(evaluation.asset_key),
                    passed=evaluation.passed,
                    severity=evaluation.severity.value,
                    description=evaluation.description or "",
                )
            )
    if interrupted:
        for result in pending.values():
            if result.status == SKIPPED:
                result.error = "not run: the run was interrupted"
    results.update(pending)
    ordered = {n: results[n] for n in plan.selected if n in results}
    return RunReport(
        env=env, results=ordered, checks=checks, run_id=run_id, interrupted=interrupted
    )


def _is_interruption(error) -> bool:  # noqa: ANN001 - a SerializableErrorInfo
    """Ctrl-C reaches steps as Dagster's interruption error or DuckDB's 'Query interrupted'."""
    while error is not None:
        if error.cls_name in ("DagsterExecutionInterruptedError", "KeyboardInterrupt") or (
            "Query interrupted" in (error.message or "")
        ):
            return True
        error = error.cause
    return False


def _node_of_step(step_key: str, candidates: Iterable[str]) -> str:
    # Asset step keys join the key path with "__" (e.g. "transform__txn_enriched").
    for node_id in candidates:
        if step_key == node_id.replace(".", "__"):
            return node_id
    return step_key


def _failure_message(event) -> str:  # noqa: ANN001
    error = event.event_specific_data.error
    if error is None:
        return "failed"
    # A dagster.Failure carries our message as its description.
    metadata_message = getattr(event.event_specific_data, "user_failure_data", None)
    if metadata_message is not None and metadata_message.description:
        return metadata_message.description
    if error.cls_name == "DagsterAssetCheckFailedError":
        failed = " ".join((error.message or "").split(":", 1)[-1].split())
        return f"its output failed a blocking check ({failed}); it is kept but not used"
    while error.cause is not None and "dagster" in (error.cls_name or "").lower():
        error = error.cause
    return (error.message or "").strip()
