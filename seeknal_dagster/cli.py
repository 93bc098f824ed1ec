"""The `seeknal` command: a thin layer over plain functions. Heavy imports stay inside commands."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from datetime import date
from functools import wraps
from pathlib import Path
from typing import Any

import click

from seeknal_dagster.console import Console
from seeknal_dagster.errors import SeeknalError


class _Context:
    def __init__(
        self,
        project_dir: Path | None,
        fmt: str,
        verbose: bool,
        params: dict[str, str] | None = None,
        run_date: date | None = None,
    ):
        self.project_dir = project_dir
        self.console = Console(fmt)
        self.verbose = verbose
        self.params = params or {}
        self.run_date = run_date

    def load(self):  # noqa: ANN201 - returns Project; kept lazy
        from seeknal_dagster import templating
        from seeknal_dagster.project import find_project_root, load_project

        today = date.today()
        run_date = self.run_date or today
        # Dagster's step processes load the project again; they read the same values from here.
        templating.export_to_environment(self.params, run_date, today)
        project = load_project(
            find_project_root(explicit=self.project_dir), self.params, run_date, today
        )
        for warning in project.warnings:
            self.console.warn(warning)
        return project


def _handles_errors(func: Callable[..., Any]) -> Callable[..., Any]:
    """Prints a product error as one clear message and exits 1 (a traceback only with -v)."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except SeeknalError as error:
            if logging.getLogger().isEnabledFor(logging.DEBUG):
                logging.getLogger(__name__).exception("details")
            Console().error(str(error))
            sys.exit(1)
        except KeyboardInterrupt:
            Console().error(
                "interrupted: the nodes that finished are kept. Fix: run the same "
                "command again to do the rest"
            )
            sys.exit(130)
        except OSError as error:
            # NOTE: product code turns the writes it expects to fail into SeeknalErrors; this
            # catches the rest (e.g. Dagster's own folders) without a traceback.
            from seeknal_dagster.storage import write_failure

            logging.getLogger(__name__).debug("details", exc_info=True)
            if error.filename:
                Console().error(str(write_failure(Path(error.filename), error)))
            else:
                Console().error(
                    f"{error}. Fix: check that target/ is writable and has free "
                    "space, then run the command again"
                )
            sys.exit(1)

    return wrapper


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--project",
    "project_dir",
    type=click.Path(path_type=Path, file_okay=False),
    help="Project folder (default: found from the current folder upwards, or "
    "$SEEKNAL_PROJECT_DIR).",
)
@click.option(
    "--format", "fmt", type=click.Choice(["text", "json"]), default="text", help="Output format."
)
@click.option("-v", "--verbose", is_flag=True, help="Show diagnostic logs.")
@click.option(
    "--params",
    "params_json",
    metavar="JSON",
    default=None,
    help="Values of {{ name }} parameters, as a JSON object: '{\"min_amount\": 10}'.",
)
@click.option(
    "--date",
    "run_date",
    metavar="YYYY-MM-DD",
    default=None,
    help="The run date, the value of {{ run_date }} (default: today).",
)
@click.pass_context
def main(
    ctx: click.Context,
    project_dir: Path | None,
    fmt: str,
    verbose: bool,
    params_json: str | None,
    run_date: str | None,
) -> None:
    """Run Seeknal YAML feature pipelines as Dagster assets."""
    from seeknal_dagster import templating

    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        params = templating.parse_cli_params(params_json) if params_json is not None else {}
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--params") from None
    try:
        day = templating.parse_run_date(run_date) if run_date is not None else None
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--date") from None
    ctx.obj = _Context(project_dir, fmt, verbose, params, day)


def _parse(obj: _Context, write: bool) -> None:
    from seeknal_dagster.manifest import build_manifest, fingerprints, write_manifest

    console = obj.console
    project = obj.load()
    console.line(f"Parsing project: {project.name}")
    console.line(f"  Path: {project.root}")
    manifest = None
    if write:
        manifest = build_manifest(project, fingerprints(project))
        write_manifest(project.target / "manifest.json", manifest)
        console.success("Manifest generated: target/manifest.json")
    else:
        console.success("Project is valid (nothing written)")
    console.line(f"  Nodes: {len(project.nodes)}")
    console.line(f"  Edges: {project.graph.edge_count}")
    console.document(
        {
            "project": project.name,
            "path": str(project.root),
            "nodes": len(project.nodes),
            "edges": project.graph.edge_count,
            "valid": True,
            "manifest": manifest,
        }
    )


@main.command()
@click.argument("env", required=False)
@click.pass_obj
@_handles_errors
def plan(obj: _Context, env: str | None) -> None:
    """Validate the project and write target/manifest.json; with ENV, plan that environment."""
    if env is None:
        _parse(obj, write=True)
        return
    _plan(obj, env)


def _plan(obj: _Context, env: str | None) -> None:
    """Builds the plan of `env` against production (None: only show the differences)."""
    from seeknal_dagster import plan as planning
    from seeknal_dagster import render
    from seeknal_dagster.manifest import fingerprints
    from seeknal_dagster.storage import PROD, SCHEMA_VERSION, Store, validate_env_name

    if env is not None:
        validate_env_name(env)
        if env == PROD:
            raise SeeknalError(
                "'prod' is production, not an environment to plan. Fix: pick "
                "another name, e.g. `seeknal plan dev`"
            )
    project = obj.load()
    store = Store(project.target)
    baseline = store.read_state(PROD)
    prints = fingerprints(project)
    the_plan, manifest = planning.build(project, prints, baseline, env or PROD)
    if env is not None:
        with store.environment_lock(env, f"seeknal plan {env}"):
            planning.save(store, the_plan, manifest, project.ttl_days)
    baseline_nodes = len(planning.baseline_manifest(baseline))
    render.plan_report(obj.console, the_plan, baseline_nodes, len(project.nodes), env is not None)
    obj.console.document({"schema_version": SCHEMA_VERSION, **the_plan.to_json()})


@main.command()
@click.pass_obj
@_handles_errors
def diff(obj: _Context) -> None:
    """Show how the project differs from production, by category; writes nothing."""
    _plan(obj, None)


@main.command()
@click.pass_obj
@_handles_errors
def parse(obj: _Context) -> None:
    """Alias of `seeknal plan` without an environment."""
    _parse(obj, write=True)


@main.command()
@click.pass_obj
@_handles_errors
def validate(obj: _Context) -> None:
    """Validate the project and report every problem; writes nothing (for CI)."""
    _parse(obj, write=False)


_RUN_OPTIONS = [
    click.option("--full", is_flag=True, help="Run every selected node, ignoring cached outputs."),
    click.option("--parallel", is_flag=True, help="Run independent nodes concurrently."),
    click.option(
        "--max-workers",
        type=click.IntRange(min=1),
        default=None,
        help="Most steps at once with --parallel (default min(cpu_count, 8)).",
    ),
    click.option("--show-plan", is_flag=True, help="Print the layers and what would run."),
    click.option("--dry-run", is_flag=True, help="Print what would run; write nothing."),
    click.option("--force", is_flag=True, help="With --env: apply even if the plan is stale."),
]


def _run_options(func: Callable[..., Any]) -> Callable[..., Any]:
    for option in reversed(_RUN_OPTIONS):
        func = option(func)
    return func


@main.command()
@_run_options
@click.option(
    "--select",
    "-s",
    "selection",
    multiple=True,
    help="name, kind.name, +name, name+, tag:x, kind:source (repeatable).",
)
@click.option("--env", "env", default=None, help="Apply environment ENV's saved plan.")
@click.pass_obj
@_handles_errors
def run(
    obj: _Context,
    full: bool,
    parallel: bool,
    max_workers: int | None,
    show_plan: bool,
    dry_run: bool,
    force: bool,
    selection: tuple[str, ...],
    env: str | None,
) -> None:
    """Run the pipeline: incremental by default, through Dagster."""
    _run(
        obj,
        env,
        full=full,
        parallel=parallel,
        max_workers=max_workers,
        show_plan=show_plan,
        dry_run=dry_run,
        force=force,
        selection=selection,
    )


def _run(
    obj: _Context,
    env: str | None,
    *,
    full: bool,
    parallel: bool,
    max_workers: int | None,
    show_plan: bool,
    dry_run: bool,
    force: bool,
    selection: tuple[str, ...],
) -> None:
    from seeknal_dagster import render
    from seeknal_dagster.manifest import fingerprints
    from seeknal_dagster.runner import CACHED, NodeResult, RunOptions, RunReport
    from seeknal_dagster.storage import PROD, Store

    started = time.perf_counter()
    console = obj.console
    if max_workers is not None and not parallel:
        raise SeeknalError(
            "--max-workers limits parallel steps, but this run is sequential. "
            "Fix: add --parallel, or drop --max-workers"
        )
    if env is not None:
        from seeknal_dagster.environments import check_new_name

        check_new_name(env)
        if selection:
            raise SeeknalError(
                "--select cannot be combined with --env: an environment runs "
                "exactly its plan. Fix: drop --select"
            )
    project = obj.load()
    options = RunOptions(
        full=full, parallel=parallel, max_workers=max_workers, select=selection, env=env or PROD
    )
    store = Store(project.target)
    prints = fingerprints(project)

    if show_plan or dry_run:
        run_plan, _, _ = _decide(project, store, prints, options, force)
        if show_plan:
            render.show_plan(console, project, run_plan, parallel)
        else:
            render.dry_run(console, project, run_plan)
        console.document(
            {"layers": run_plan.layers, "to_run": run_plan.to_run, "cached": run_plan.cached}
        )
        return

    from seeknal_dagster import environments
    from seeknal_dagster.runner import execute

    command = f"seeknal run --env {env}" if env else "seeknal run"
    with store.environment_lock(options.env, command):
        if full:
            # A damaged pointer file is moved aside: a full run rebuilds everything anyway.
            store.read_state(options.env, recover=True)
        run_plan, saved, reused = _decide(project, store, prints, options, force)
        # A promotion or rollback killed after its switch is finished here, before running.
        environments.finish_switch(project, store, options.env)
        if saved is not None:
            render.apply_header(console, saved, run_plan)
        else:
            render.run_header(console, project, options)
        if env is None and not run_plan.to_run:
            report = RunReport(PROD, {n: NodeResult(n, CACHED) for n in run_plan.cached})
            report.duration = time.perf_counter() - started
            console.line("Nothing to do: every selected node is up to date.")
            console.line()
            render.summary(console, run_plan, report, options)
            console.document(render.report_document(report))
            return
        if saved is not None:
            environments.seed(store, options.env, reused, prints)
        if run_plan.to_run:
            report = execute(project, run_plan, options, progress=_progress_line(console))
            console.clear_status()
        else:
            report = RunReport(options.env, {n: NodeResult(n, CACHED) for n in run_plan.cached})
            report.duration = time.perf_counter() - started
        if saved is not None:
            environments.record_reused_in_dagster(project, options.env, reused)
            if not report.failed:
                environments.mark_applied(store, options.env, saved)
    render.run_report(console, project, run_plan, report, options)
    console.document(render.report_document(report))
    if report.interrupted:
        console.error(
            "interrupted: the nodes that finished are kept. Fix: run the same command "
            "again to do the rest"
        )
        sys.exit(130)
    if report.failed:
        console.error(_failure_summary(report))
        sys.exit(1)
    if env is not None:
        console.success(f"Environment '{env}' applied")
        console.line(f"  Outputs: target/environments/{env}/")


@main.command()
@click.argument("source")
@click.argument("target", required=False, default="prod")
@click.option("--force", is_flag=True, help="Promote even if the plan is stale or prod moved.")
@click.pass_obj
@_handles_errors
def promote(obj: _Context, source: str, target: str, force: bool) -> None:
    """Make TARGET (default prod) exactly SOURCE, atomically; the old state is kept."""
    from seeknal_dagster import environments
    from seeknal_dagster.manifest import fingerprints
    from seeknal_dagster.storage import PROD, Store, validate_env_name

    started = time.perf_counter()
    validate_env_name(source)
    validate_env_name(target)
    if source == PROD:
        raise SeeknalError(
            "production cannot be promoted. Fix: promote an environment, e.g. `seeknal promote dev`"
        )
    if source == target:
        raise SeeknalError(f"cannot promote '{source}' into itself. Fix: name another target")
    project = obj.load()
    store = Store(project.target)
    prints = fingerprints(project)
    with (
        store.environment_lock(source, f"seeknal promote {source} {target}"),
        store.environment_lock(target, f"seeknal promote {source} {target}"),
    ):
        exported, switched = environments.promote(project, store, prints, source, target, force)
    console = obj.console
    elapsed = time.perf_counter() - started
    if switched:
        console.success(f"Promoted '{source}' to '{target}' in {elapsed:.2f}s")
    else:
        console.success(f"'{target}' already was exactly '{source}': nothing switched")
    for node_id in exported:
        console.line(f"  re-exported {node_id}")
    if switched:
        console.line(f"  Previous state kept: `seeknal rollback {target}` restores it")
    console.document(
        {"source": source, "target": target, "switched": switched, "exported": exported}
    )


@main.command()
@click.argument("env", required=False, default="prod")
@click.pass_obj
@_handles_errors
def rollback(obj: _Context, env: str) -> None:
    """Restore ENV (default prod) to its state before the last promotion into it."""
    from seeknal_dagster import environments
    from seeknal_dagster.storage import Store

    project = obj.load()
    store = Store(project.target)
    with store.environment_lock(env, f"seeknal rollback {env}"):
        version = environments.rollback(project, store, env)
    obj.console.success(f"Rolled '{env}' back to its state version {version}")
    obj.console.document({"environment": env, "restored_version": version})


@main.group()
def env() -> None:
    """Environments: plan, apply, promote, list, delete, gc."""


@env.command("plan")
@click.argument("name")
@click.pass_obj
@_handles_errors
def env_plan(obj: _Context, name: str) -> None:
    """Alias of `seeknal plan NAME`."""
    _plan(obj, name)


@env.command("apply")
@click.argument("name")
@_run_options
@click.pass_obj
@_handles_errors
def env_apply(
    obj: _Context,
    name: str,
    full: bool,
    parallel: bool,
    max_workers: int | None,
    show_plan: bool,
    dry_run: bool,
    force: bool,
) -> None:
    """Alias of `seeknal run --env NAME`."""
    _run(
        obj,
        name,
        full=full,
        parallel=parallel,
        max_workers=max_workers,
        show_plan=show_plan,
        dry_run=dry_run,
        force=force,
        selection=(),
    )


# `seeknal env promote FROM TO` is the same command as `seeknal promote FROM [TO]`.
env.add_command(promote, "promote")


@env.command("list")
@click.pass_obj
@_handles_errors
def env_list(obj: _Context) -> None:
    """Name, created, last accessed, status and nodes changed of every environment."""
    from seeknal_dagster.environments import list_environments
    from seeknal_dagster.project import find_project_root
    from seeknal_dagster.storage import Store

    root = find_project_root(explicit=obj.project_dir)
    rows = list_environments(Store(root / "target"))
    console = obj.console
    console.line("Environments:")
    if not rows:
        console.line("  (none; create one with `seeknal plan NAME`)")
    else:
        console.line(f"  {'Name':<18}{'Created':<21}{'Last Accessed':<21}{'Status':<10}Changed")
    for row in rows:
        console.line(
            f"  {row.name:<18}{_when(row.created_at):<21}{_when(row.last_accessed):<21}"
            f"{row.status.capitalize():<10}{row.nodes_changed}"
        )
    console.document([vars(row) for row in rows])


def _when(stamp: str) -> str:
    return stamp.replace("T", " ")[:16]


@env.command("delete")
@click.argument("name")
@click.pass_obj
@_handles_errors
def env_delete(obj: _Context, name: str) -> None:
    """Remove environment NAME (production is never touched)."""
    from seeknal_dagster.environments import delete
    from seeknal_dagster.project import find_project_root
    from seeknal_dagster.storage import Store

    root = find_project_root(explicit=obj.project_dir)
    delete(Store(root / "target"), name)
    obj.console.success(f"Deleted environment '{name}'")


@env.command("gc")
@click.pass_obj
@_handles_errors
def env_gc(obj: _Context) -> None:
    """Remove expired environments, then snapshots nothing points to."""
    from seeknal_dagster.environments import gc
    from seeknal_dagster.project import find_project_root
    from seeknal_dagster.storage import Store

    root = find_project_root(explicit=obj.project_dir)
    removed, files, freed = gc(Store(root / "target"))
    obj.console.success(
        f"Removed {len(removed)} expired environment(s) and {files} unused "
        f"snapshot(s), {freed / 1e6:.1f} MB"
    )
    for name in removed:
        obj.console.line(f"  - {name}")
    obj.console.document({"environments": removed, "snapshots": files, "bytes": freed})


def _decide(project, store, prints, options, force: bool):  # noqa: ANN001, ANN202
    """What the run executes: (run plan, the environment's saved plan or None, reused pointers)."""
    from seeknal_dagster.runner import plan_run
    from seeknal_dagster.storage import PROD

    if options.env == PROD:
        return plan_run(project, prints, store.read_state(PROD), store, options), None, {}
    from seeknal_dagster import environments

    saved, run_plan, reused = environments.prepare_apply(project, store, prints, options.env, force)
    return run_plan, saved, reused


def _progress_line(console: Console) -> Callable[[int, int, list[str]], None] | None:
    if not console.styled:
        return None

    def show(done: int, total: int, running: list[str]) -> None:
        now = ", ".join(n.split(".", 1)[1] for n in running)
        console.status(f"  {done}/{total} nodes done" + (f" · running: {now}" if now else ""))

    return show


def _check_port_free(host: str, port: int) -> None:
    """Refuses a port something already listens on (the URL would show that other program)."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((host, port))
        except OSError as error:
            raise SeeknalError(
                f"cannot serve the UI on {host}:{port}: {error.strerror}. Fix: "
                "pick a free port with --port"
            ) from None


def _failure_summary(report) -> str:  # noqa: ANN001
    from seeknal_dagster.runner import FAILED, SKIPPED

    failed = [r for r in report.results.values() if r.status == FAILED]
    skipped = [r.node_id for r in report.results.values() if r.status == SKIPPED]
    lines = [f"{len(failed)} node(s) failed, {len(skipped)} skipped"]
    lines += [
        f"  {r.error}" if r.error.startswith(f"{r.node_id}:") else f"  {r.node_id}: {r.error}"
        for r in failed
    ]
    if skipped:
        lines.append(f"  skipped because an upstream node failed: {', '.join(skipped)}")
    blocking = [c for c in report.checks if not c.passed and c.severity == "ERROR"]
    lines += [f"  check {c.rule} on {c.target} failed: {c.description}" for c in blocking]
    return "\n".join(lines)


@main.command()
@click.option("--port", type=click.IntRange(1, 65535), default=3000, show_default=True)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.pass_obj
@_handles_errors
def ui(obj: _Context, port: int, host: str) -> None:
    """Open the project in the Dagster UI (`dagster dev`, daemon included); Ctrl-C stops it."""
    import contextlib
    import os
    import signal
    import subprocess

    from seeknal_dagster.dagster_defs import (
        dagster_home,
        ensure_instance,
        ensure_partition,
        workspace_file,
    )
    from seeknal_dagster.storage import PROD

    project = obj.load()
    with ensure_instance(project) as instance:
        ensure_partition(instance, PROD)
    env = {
        **os.environ,
        "SEEKNAL_PROJECT_DIR": str(project.root),
        "DAGSTER_HOME": str(dagster_home(project)),
    }
    command = [sys.executable, "-m", "dagster", "dev", "-w", str(workspace_file(project))]
    _check_port_free(host, port)
    command += ["-h", host, "-p", str(port)]
    obj.console.line(f"Dagster UI for {project.name}: http://{host}:{port}")
    obj.console.line("  Instance: " + env["DAGSTER_HOME"] + "  (Ctrl-C stops the UI)")

    def interrupted(*_: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupted)
    # NOTE: a shell starting us in the background ignores SIGINT, and `dagster dev` would inherit
    # that and ignore SIGTERM too (it maps one onto the other); Ctrl-C must stop both.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    # NOTE: its own process group, so that stopping reaches the webserver, the daemon and the
    # code servers `dagster dev` starts, and no process outlives the command.
    process = subprocess.Popen(command, env=env, cwd=project.root, start_new_session=True)
    try:
        process.wait()
    except KeyboardInterrupt:
        obj.console.line("Stopping the Dagster UI ...")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            process.poll()
            try:
                os.killpg(process.pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.2)
        else:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
        process.wait()


if __name__ == "__main__":
    main()
