"""`schedules:` of seeknal_project.yml -> Dagster schedules that `dagster-daemon` runs.

Each schedule gets an asset job over its selection (`select`, resolved like `seeknal run
--select`). A tick does what `seeknal run --select ...` does in the schedule's environment: it runs
the selected nodes whose output is not up to date, and skips the tick when there are none.
Schedules start running as soon as the daemon sees them; cron times are UTC.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import dagster as dg

from seeknal_dagster.dagster_defs import asset_key, check_keys, ensure_partition
from seeknal_dagster.manifest import fingerprints
from seeknal_dagster.project import Project, Schedule, load_project
from seeknal_dagster.runner import RunOptions, RunPlan, plan_run
from seeknal_dagster.storage import EnvState, Store


def build_schedules(
    project: Project, prints: Mapping[str, str]
) -> tuple[list[dg.UnresolvedAssetJobDefinition], list[dg.ScheduleDefinition]]:
    """One asset job and one schedule per entry of the project's `schedules:`."""
    jobs = []
    schedules = []
    for schedule in project.schedules:
        selected = _plan(project, prints, schedule, full=True).selected
        job = dg.define_asset_job(
            f"{schedule.name}_job",
            selection=dg.AssetSelection.assets(*(asset_key(n) for n in selected)),
            description=f"Nodes of schedule `{schedule.name}` in seeknal_project.yml",
        )
        jobs.append(job)
        schedules.append(_schedule(project.root, schedule, job))
    return jobs, schedules


def _schedule(
    root: Path, schedule: Schedule, job: dg.UnresolvedAssetJobDefinition
) -> dg.ScheduleDefinition:
    select = " ".join(schedule.select) or "every node"

    @dg.schedule(
        name=schedule.name,
        cron_schedule=schedule.cron,
        job=job,
        execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description=f"{select} in '{schedule.env}' at `{schedule.cron}` (UTC), incrementally",
        tags={"seeknal/environment": schedule.env},
    )
    def _tick(context: dg.ScheduleEvaluationContext) -> dg.RunRequest | dg.SkipReason:
        # NOTE: read afresh; the definitions may have been loaded long before this tick.
        project = load_project(root)
        plan = _plan(project, fingerprints(project), schedule)
        if not plan.to_run:
            return dg.SkipReason(
                f"nothing to do: every node of `{select}` is up to date in '{schedule.env}'"
            )
        ensure_partition(context.instance, schedule.env)
        return dg.RunRequest(
            partition_key=schedule.env,
            asset_selection=[asset_key(n) for n in plan.to_run],
            asset_check_keys=check_keys(project, plan.to_run),
            tags={"seeknal/environment": schedule.env, "seeknal/schedule": schedule.name},
        )

    return _tick


def _plan(
    project: Project, prints: Mapping[str, str], schedule: Schedule, full: bool = False
) -> RunPlan:
    """What `seeknal run --select ...` would run now in the schedule's environment."""
    options = RunOptions(full=full, select=schedule.select, env=schedule.env)
    store = Store(project.target)
    state = EnvState(schedule.env) if full else store.read_state(schedule.env)
    return plan_run(project, prints, state, store, options)
