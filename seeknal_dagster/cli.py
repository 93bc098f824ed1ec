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


@main.command()
@click.option("--full", is_flag=True, help="Run every selected node, ignoring cached outputs.")
@click.option("--parallel", is_flag=True, help="Run independent nodes concurrently.")
@click.option(
    "--max-workers",
    type=click.IntRange(min=1),
    default=None,
    help="Most steps at once with --parallel (default min(cpu_count, 8)).",
)
@click.option("--show-plan", is_flag=True, help="Print the layers and what would run; run nothing.")
@click.option("--dry-run", is_flag=True, help="Print what would run; write nothing.")
@click.option(
    "--select",
    "-s",
    "selection",
    multiple=True,
    help="name, kind.name, +name, name+, tag:x, kind:source (repeatable).",
)
@click.pass_obj
@_handles_errors
def run(
    obj: _Context,
    full: bool,
    parallel: bool,
    max_workers: int | None,
    show_plan: bool,
    dry_run: bool,
    selection: tuple[str, ...],
) -> None:
    """Run the pipeline: incremental by default, through Dagster."""
    from seeknal_dagster import render
    from seeknal_dagster.manifest import fingerprints
    from seeknal_dagster.runner import RunOptions, plan_run
    from seeknal_dagster.storage import PROD, Store

    started = time.perf_counter()
    console = obj.console
    project = obj.load()
    options = RunOptions(
        full=full, parallel=parallel, max_workers=max_workers, select=selection, env=PROD
    )
    store = Store(project.target)
    prints = fingerprints(project)
    run_plan = plan_run(project, prints, store.read_state(PROD), store, options)

    if show_plan:
        render.show_plan(console, project, run_plan, parallel)
        console.document(
            {"layers": project.graph.layers, "to_run": run_plan.to_run, "cached": run_plan.cached}
        )
        return
    if dry_run:
        render.dry_run(console, project, run_plan)
        console.document({"to_run": run_plan.to_run, "cached": run_plan.cached})
        return

    render.run_header(console, project, options)
    if not run_plan.to_run:
        from seeknal_dagster.runner import CACHED, NodeResult, RunReport

        report = RunReport(PROD, {n: NodeResult(n, CACHED) for n in run_plan.cached})
        report.duration = time.perf_counter() - started
        console.line("Nothing to do: every selected node is up to date.")
        console.line()
        render.summary(console, run_plan, report, options)
        console.document(render.report_document(report))
        return

    from seeknal_dagster.runner import execute

    with store.environment_lock(PROD, "seeknal run"):
        report = execute(project, run_plan, options)
    render.run_report(console, project, run_plan, report, options)
    console.document(render.report_document(report))
    if report.failed:
        console.error(_failure_summary(report))
        sys.exit(1)


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
