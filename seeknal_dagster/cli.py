"""The `seeknal` command: a thin layer over plain functions. Heavy imports stay inside commands."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Any

import click

from seeknal_dagster.console import Console
from seeknal_dagster.errors import SeeknalError


class _Context:
    def __init__(self, project_dir: Path | None, fmt: str, verbose: bool):
        self.project_dir = project_dir
        self.console = Console(fmt)
        self.verbose = verbose

    def load(self):  # noqa: ANN201 - returns Project; kept lazy
        from seeknal_dagster.project import find_project_root, load_project

        project = load_project(find_project_root(explicit=self.project_dir))
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
@click.pass_context
def main(ctx: click.Context, project_dir: Path | None, fmt: str, verbose: bool) -> None:
    """Run Seeknal YAML feature pipelines as Dagster assets."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    ctx.obj = _Context(project_dir, fmt, verbose)


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
    from seeknal_dagster.storage import PROD, Store, validate_env_name

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
    obj.console.document(the_plan.to_json())


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
    from seeknal_dagster.runner import CACHED, NodeResult, RunOptions, RunReport, plan_run
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
    reused: dict = {}
    saved = None
    if env is None:
        run_plan = plan_run(project, prints, store.read_state(PROD), store, options)
    else:
        from seeknal_dagster import environments

        saved, run_plan, reused = environments.prepare_apply(project, store, prints, env, force)

    if show_plan:
        render.show_plan(console, project, run_plan, parallel)
        console.document(
            {"layers": run_plan.layers, "to_run": run_plan.to_run, "cached": run_plan.cached}
        )
        return
    if dry_run:
        render.dry_run(console, project, run_plan)
        console.document({"to_run": run_plan.to_run, "cached": run_plan.cached})
        return

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

    from seeknal_dagster.runner import execute

    command = f"seeknal run --env {env}" if env else "seeknal run"
    with store.environment_lock(options.env, command):
        if env is not None:
            from seeknal_dagster import environments

            environments.seed(store, env, reused)
        if run_plan.to_run:
            report = execute(project, run_plan, options, progress=_progress_line(console))
            console.clear_status()
        else:
            report = RunReport(options.env, {n: NodeResult(n, CACHED) for n in run_plan.cached})
            report.duration = time.perf_counter() - started
        if env is not None and saved is not None:
            environments.record_reused_in_dagster(project, env, reused)
            if not report.failed:
                environments.mark_applied(store, env, saved)
    render.run_report(console, project, run_plan, report, options)
    console.document(render.report_document(report))
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
    _promote(obj, source, target, force)


def _promote(obj: _Context, source: str, target: str, force: bool) -> None:
    from seeknal_dagster import environments
    from seeknal_dagster.manifest import fingerprints
    from seeknal_dagster.storage import Store

    started = time.perf_counter()
    project = obj.load()
    store = Store(project.target)
    prints = fingerprints(project)
    with (
        store.environment_lock(source, f"seeknal promote {source} {target}"),
        store.environment_lock(target, f"seeknal promote {source} {target}"),
    ):
        exported = environments.promote(project, store, prints, source, target, force)
    console = obj.console
    console.success(f"Promoted '{source}' to '{target}' in {time.perf_counter() - started:.2f}s")
    for node_id in exported:
        console.line(f"  re-exported {node_id}")
    console.line(f"  Previous state kept: `seeknal rollback {target}` restores it")
    console.document({"source": source, "target": target, "exported": exported})


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


@env.command("promote")
@click.argument("source")
@click.argument("target", required=False, default="prod")
@click.option("--force", is_flag=True, help="Promote even if the plan is stale or prod moved.")
@click.pass_obj
@_handles_errors
def env_promote(obj: _Context, source: str, target: str, force: bool) -> None:
    """Alias of `seeknal promote SOURCE [TARGET]`."""
    _promote(obj, source, target, force)


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


def _progress_line(console: Console) -> Callable[[int, int, list[str]], None] | None:
    if not console.styled:
        return None

    def show(done: int, total: int, running: list[str]) -> None:
        now = ", ".join(n.split(".", 1)[1] for n in running)
        console.status(f"  {done}/{total} nodes done" + (f" · running: {now}" if now else ""))

    return show


def _failure_summary(report) -> str:  # noqa: ANN001
    from seeknal_dagster.runner import FAILED, SKIPPED

    failed = [r for r in report.results.values() if r.status == FAILED]
    skipped = [r.node_id for r in report.results.values() if r.status == SKIPPED]
    lines = [f"{len(failed)} node(s) failed, {len(skipped)} skipped"]
    lines += [f"  {r.node_id}: {r.error}" for r in failed]
    if skipped:
        lines.append(f"  skipped because an upstream node failed: {', '.join(skipped)}")
    blocking = [c for c in report.checks if not c.passed and c.severity == "ERROR"]
    lines += [f"  check {c.rule} on {c.target} failed: {c.description}" for c in blocking]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
