"""Lays out run plans and run reports on the console in the tutorial's format."""

from __future__ import annotations

from seeknal_dagster.console import RULE, Console
from seeknal_dagster.diff import CATEGORY_ORDER
from seeknal_dagster.plan import Plan
from seeknal_dagster.project import Project
from seeknal_dagster.runner import (
    CACHED,
    FAILED,
    SKIPPED,
    SUCCESS,
    RunOptions,
    RunPlan,
    RunReport,
    default_workers,
)


def short(node_id: str) -> str:
    return node_id.split(".", 1)[1]


def _mode(options: RunOptions) -> str:
    return "Full (ignore cache)" if options.full else "Incremental"


def run_header(console: Console, project: Project, options: RunOptions) -> None:
    title = "Seeknal Parallel Execution" if options.parallel else "Seeknal Pipeline Execution"
    console.heading(title)
    console.line(f"  Project: {project.name}")
    console.line(f"  Path: {project.root}")
    if options.env != "prod":
        console.line(f"  Environment: {options.env}")
    console.line(f"  Mode: {_mode(options)}")
    if options.parallel:
        console.line(f"  Max Workers: {default_workers(project, options.max_workers)}")
    console.line()


def apply_header(console: Console, plan: Plan, run_plan: RunPlan) -> None:
    console.line(f"Applying environment: {plan.environment}")
    console.line(f"  Plan created: {plan.created_at}")
    console.line(f"  Nodes to execute: {len(run_plan.to_run)}")
    console.line()


def show_plan(console: Console, project: Project, plan: RunPlan, parallel: bool) -> None:
    """The layers, each node with its inputs, and what a run would do."""
    console.heading(f"Execution Plan ({'Parallel' if parallel else 'Sequential'}):")
    for index, layer in enumerate(plan.layers, start=1):
        noun = "node" if len(layer) == 1 else "nodes"
        deps = "(0 dependencies)" if index == 1 else f"(depends on Layer {index - 1})"
        console.line(f"Layer {index}: {len(layer)} {noun} {deps}")
        for node_id in layer:
            inputs = project.nodes[node_id].inputs
            what = "run" if node_id in plan.to_run else "cached"
            arrow = f" → [{', '.join(short(i) for i in inputs)}]" if inputs else ""
            console.line(f"  - {short(node_id)}{arrow}  ({what})")
        console.line()
    console.line(f"Would run: {len(plan.to_run)} node(s); cached: {len(plan.cached)}")
    console.line(RULE)


def dry_run(console: Console, project: Project, plan: RunPlan) -> None:
    console.heading("Dry run: nothing will be executed or written")
    for node_id in plan.selected:
        status = "RUN" if node_id in plan.to_run else CACHED
        console.line(f"  {status:<7} {node_id}")
    console.line()
    console.line(f"  Would execute: {len(plan.to_run)}")
    console.line(f"  Cached:        {len(plan.cached)}")
    console.line(RULE)


def run_report(
    console: Console, project: Project, plan: RunPlan, report: RunReport, options: RunOptions
) -> None:
    """Per-node lines (by layer when parallel, numbered when sequential) and the summary."""
    results = report.results
    executed = [n for n in results if results[n].status != CACHED]
    if options.parallel:
        total_layers = len(plan.layers)
        for index, layer in enumerate(plan.layers, start=1):
            ran = [n for n in layer if n in executed]
            if not ran:
                continue
            console.line(
                f"[Layer {index}/{total_layers}] Running {len(ran)} node(s) in parallel..."
            )
            for node_id in ran:
                _node_line(console, report, node_id, numbered=None)
            console.line()
    else:
        if executed:
            console.heading("Execution")
        for position, node_id in enumerate(executed, start=1):
            _node_line(console, report, node_id, numbered=(position, len(executed)))
        if executed:
            console.line()
    for node_id, result in results.items():
        if result.status == CACHED:
            console.line(f"  {short(node_id)} CACHED")
    if any(r.status == CACHED for r in results.values()):
        console.line()
    # Rules are shown always; the checks every node gets from its own declarations only when
    # they fail, with a count of the ones that passed.
    shown = [c for c in report.checks if c.rule.startswith("rule.") or not c.passed]
    for check in shown:
        label = "PASS" if check.passed else ("FAIL" if check.severity == "ERROR" else "WARN")
        console.line(
            f"  check {check.rule} on {check.target}: {label} - {check.description}",
            style=None if check.passed else ("red" if label == "FAIL" else "yellow"),
        )
    declared = [c for c in report.checks if not c.rule.startswith("rule.")]
    if declared:
        passed = sum(1 for c in declared if c.passed)
        console.line(f"  Declared-schema checks: {passed}/{len(declared)} passed")
    if report.checks:
        console.line()
    if report.count(SUCCESS):
        console.success("State saved")
        console.line()
    summary(console, plan, report, options)


def _node_line(
    console: Console, report: RunReport, node_id: str, numbered: tuple[int, int] | None
) -> None:
    result = report.results[node_id]
    name = short(node_id)
    rows = f"{result.rows:,} rows" if result.rows is not None else ""
    if numbered:
        console.line(f"{numbered[0]}/{numbered[1]}: {name} [RUNNING]")
        if result.status == SUCCESS:
            console.line(f"  SUCCESS in {result.duration:.2f}s", style="green")
            if result.rows is not None:
                console.line(f"  Rows: {result.rows:,}")
        else:
            console.line(f"  {result.status}: {result.error}", style="red")
        console.line()
        return
    if result.status == SUCCESS:
        console.line(f"  {name} completed in {result.duration:.2f}s ({rows})")
    else:
        console.line(f"  {name} {result.status}: {result.error}", style="red")


def summary(console: Console, plan: RunPlan, report: RunReport, options: RunOptions) -> None:
    parallel = options.parallel
    console.heading("Parallel Execution Summary" if parallel else "Execution Summary")
    executed = report.count(SUCCESS) + report.count(FAILED)
    rows = [("Total nodes", len(report.results))]
    if parallel:
        rows.append(("Layers", len(plan.layers)))
    rows += [("Executed", executed), ("Successful", report.count(SUCCESS))]
    cached_label = "Cached" if options.env == "prod" else "Cached (from production)"
    rows.append((cached_label, report.count(CACHED)))
    if report.count(FAILED):
        rows.append(("Failed", report.count(FAILED)))
    if report.count(SKIPPED):
        rows.append(("Skipped", report.count(SKIPPED)))
    width = max(len(label) for label, _ in rows) + 2
    for label, value in rows:
        console.line(f"  {label + ':':<{width}} {value}")
    console.line(f"  {'Duration:':<{width}} {report.duration:.2f}s")
    console.line(RULE)


def report_document(report: RunReport) -> dict:
    """The run report as JSON for `--format json`."""
    return {
        "environment": report.env,
        "run_id": report.run_id,
        "duration_s": round(report.duration, 3),
        "nodes": [
            {
                "node": r.node_id,
                "status": r.status,
                "duration_s": round(r.duration, 3),
                "rows": r.rows,
                "error": r.error or None,
            }
            for r in report.results.values()
        ],
        "checks": [vars(c) for c in report.checks],
        "failed": report.failed,
    }


def plan_report(
    console: Console, plan: Plan, baseline_nodes: int, project_nodes: int, saved: bool
) -> None:
    """A plan in the tutorial's layout: categories, the BREAKING warning, the summary block."""
    if saved:
        console.line(f"Planning environment: {plan.environment}")
    else:
        console.line("Changes against production")
    console.line(f"  Production manifest: target/state/prod.json ({baseline_nodes} nodes)")
    console.line(f"  New manifest: seeknal/ ({project_nodes} nodes)")
    console.line()
    if not plan.changes:
        console.line("No changes detected.")
        console.line()
    else:
        console.heading("Changes Detected:")
        for category in CATEGORY_ORDER:
            group = [c for c in plan.changes if c.category == category]
            if not group:
                continue
            console.line(f"  {category} ({len(group)}):", style=_CATEGORY_STYLE.get(category))
            for change in group:
                console.line(f"    - {change.node} ({', '.join(change.reasons)})")
                for line in change.impact:
                    console.line(f"        ↳ {line}")
            console.line()
    if plan.breaking:
        console.line("⚠ WARNING: BREAKING changes detected.", style="bold red")
        console.line("  Downstream consumers may fail if they depend on removed features.")
        console.line("  Review carefully before applying.")
        console.line()
    if saved:
        console.line("Environment Plan:")
        console.line(f"  Name: {plan.environment}")
        console.line(f"  Created: {plan.created_at}")
    else:
        console.line("Summary:")
    breaking = f" ({len(plan.breaking)} BREAKING)" if plan.breaking else ""
    console.line(f"  Changes: {len(plan.to_execute)} nodes to execute{breaking}")
    console.line(f"  Added: {len(plan.added)}")
    console.line(f"  Removed: {len(plan.removed)}")
    console.line(RULE)


_CATEGORY_STYLE = {
    "BREAKING": "bold red",
    "NON_BREAKING": "yellow",
    "NEW": "green",
    "REMOVED": "magenta",
    "METADATA": "dim",
    "DEPENDENT": "cyan",
}
