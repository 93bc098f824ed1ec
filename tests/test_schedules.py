"""`schedules:` in seeknal_project.yml: validation, the Dagster schedules and a real daemon run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import duckdb
import pytest
from dagster._utils.schedules import is_valid_cron_string
from test_dagster_defs import SHOP

from seeknal_dagster.dagster_defs import ENV_PARTITIONS, asset_key, seeknal_definitions
from seeknal_dagster.project import cron_problem
from seeknal_dagster.storage import Store

REPO = Path(__file__).resolve().parent.parent


def with_schedules(text: str) -> dict[str, str]:
    return {**SHOP, "seeknal_project.yml": f"name: shop\nschedules:\n{text}"}


# --- validation -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        (
            "- {name: nightly, cron: '61 2 * * *'}",
            "seeknal_project.yml [schedules[0].cron]: invalid cron '61 2 * * *': minute '61' is "
            "not in 0-59. Fix: write five fields",
        ),
        (
            "- {name: nightly, cron: '0 2 * *'}",
            "[schedules[0].cron]: invalid cron '0 2 * *': expected 5 fields, found 4",
        ),
        (
            "- {name: nightly, cron: '0 0 30 2 *'}",
            "[schedules[0].cron]: invalid cron '0 0 30 2 *': February has no day 30 or 31",
        ),
        (
            "- {name: nightly, cron: '@daily', select: [spnd]}",
            "[schedules[0].select]: select term 'spnd' matches no node (did you mean 'spend'?)",
        ),
        (
            "- {name: nightly, cron: '@daily', select: 'tag:nope'}",
            "[schedules[0].select]: select term 'tag:nope' matches no node",
        ),
        (
            "- {name: nightly, cron: '@daily', select: {a: 1}}",
            "[schedules[0].select]: expected a selection or a list of them",
        ),
        (
            "- {name: nightly, cron: '@daily', env: Dev}",
            "[schedules[0].env]: invalid environment name 'Dev'",
        ),
        (
            "- {name: nightly, cron: '@daily', selct: [spend]}",
            "[schedules[0].selct]: unknown schedule key (did you mean 'select'?)",
        ),
        (
            "- {name: nightly-run, cron: '@daily'}",
            "[schedules[0].name]: invalid schedule name 'nightly-run'",
        ),
        (
            "- {name: nightly, cron: '@daily'}\n- {name: nightly, cron: '@hourly'}",
            "[schedules[1].name]: duplicate schedule name 'nightly'",
        ),
    ],
)
def test_validate_rejects_a_bad_schedule_naming_its_key(make_project, seeknal, entry, expected):
    root = make_project(with_schedules(entry))

    result = seeknal(root, "validate")

    assert result.returncode == 1
    assert expected in result.stdout + result.stderr


def test_validate_accepts_good_schedules(make_project, seeknal):
    root = make_project(
        with_schedules(
            "- {name: nightly, cron: '0 2 * * *', select: [+training]}\n"
            "- {name: weekdays, cron: '*/15 9-17 * * mon-fri', select: 'tag:raw spend+'}\n"
            "- {name: dev_refresh, cron: '@hourly', env: dev}\n"
        )
    )

    result = seeknal(root, "validate")

    assert result.returncode == 0, result.stdout + result.stderr


CRONS = [
    "* * * * *",
    "0 2 * * *",
    "*/5 * * * *",
    "5/15 * * * *",
    "1-5/2 * * * *",
    "0 9-17 * * mon-fri",
    "0 0 * JAN,jul *",
    "0 0 * * 7",
    "0 0 * * 0-7",
    "0 0 ? * *",
    "0 0 29 2 *",
    "0 0 1-31/2 2 *",
    "@daily",
    "@hourly",
    "@weekly",
    "@monthly",
    "@yearly",
    "@annually",
    "@midnight",
    "61 * * * *",
    "* 24 * * *",
    "* * 0 * *",
    "* * * 13 *",
    "* * * * 8",
    "a b c d e",
    "* * * *",
    "* * * * * *",
    "*/0 * * * *",
    "5-1 * * * *",
    "0 0 30 2 *",
    "0 0 31 feb *",
    "0 0 L * *",
    "0 0 * * 1#2",
    "@reboot",
    "",
]


@pytest.mark.parametrize("cron", CRONS)
def test_cron_accepted_by_validation_is_accepted_by_dagster(cron):
    if cron_problem(cron) is None:
        assert is_valid_cron_string(cron)


def test_common_crons_are_accepted():
    accepted = [c for c in CRONS if cron_problem(c) is None]

    assert accepted == CRONS[: CRONS.index("61 * * * *")]


# --- Dagster schedules ------------------------------------------------------------------------


def test_schedules_become_running_dagster_schedules_over_their_selection(make_project):
    root = make_project(
        with_schedules(
            "- {name: nightly, cron: '0 2 * * *', select: [+spend]}\n"
            "- {name: everything, cron: '@hourly'}\n"
        )
    )

    defs = seeknal_definitions(root)
    nightly = defs.resolve_schedule_def("nightly")
    job = defs.resolve_job_def("nightly_job")

    assert nightly.cron_schedule == "0 2 * * *"
    assert nightly.execution_timezone == "UTC"
    assert nightly.default_status == dg.DefaultScheduleStatus.RUNNING
    assert job.asset_layer.selected_asset_keys == {
        asset_key("source.orders"),
        asset_key("feature_group.spend"),
    }
    assert len(defs.resolve_job_def("everything_job").asset_layer.selected_asset_keys) == 3


def test_tick_requests_the_stale_nodes_then_skips(make_project):
    root = make_project(with_schedules("- {name: nightly, cron: '0 2 * * *', select: [+spend]}\n"))
    defs = seeknal_definitions(root)
    schedule = defs.resolve_schedule_def("nightly")

    with dg.instance_for_test() as instance:
        request = schedule(dg.build_schedule_context(instance=instance))
        assert isinstance(request, dg.RunRequest)
        assert request.partition_key == "prod"
        assert set(request.asset_selection) == {
            asset_key("source.orders"),
            asset_key("feature_group.spend"),
        }
        assert {k.name for k in request.asset_check_keys} == {
            "declared_columns",
            "entity_keys_not_null",
            "entity_keys_unique",
        }
        assert request.tags["seeknal/schedule"] == "nightly"
        assert instance.has_dynamic_partition(ENV_PARTITIONS.name, "prod")

        result = defs.resolve_job_def("nightly_job").execute_in_process(
            instance=instance,
            partition_key="prod",
            asset_selection=list(request.asset_selection),
        )
        assert result.success
        again = schedule(dg.build_schedule_context(instance=instance))

    assert isinstance(again, dg.SkipReason)
    assert "nothing to do" in again.skip_message


# --- the daemon -------------------------------------------------------------------------------


def next_minute_cron(margin: float = 45.0) -> tuple[str, datetime]:
    """A daily cron for the first whole minute at least `margin` seconds away (UTC)."""
    due = (datetime.now(UTC) + timedelta(seconds=margin + 60)).replace(second=0, microsecond=0)
    return f"{due.minute} {due.hour} * * *", due


@pytest.mark.slow
def test_daemon_runs_a_due_schedule(make_project, tmp_path):
    cron, due = next_minute_cron()
    root = make_project(with_schedules(f"- {{name: soon, cron: '{cron}', select: [+training]}}\n"))
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    env = {**os.environ, "SEEKNAL_PROJECT_DIR": str(root), "DAGSTER_HOME": str(home)}
    instance = dg.DagsterInstance.from_config(str(home))  # creates the storage before the daemon
    log = open(tmp_path / "daemon.log", "wb")
    daemon = subprocess.Popen(
        [str(Path(sys.executable).parent / "dagster-daemon"), "run", "-w", "workspace.yaml"],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        run = wait_for_scheduled_run(instance, "soon", deadline=time.monotonic() + 150)
    finally:
        stop_group(daemon)
        log.close()
        instance.dispose()

    daemon_log = (tmp_path / "daemon.log").read_text(errors="replace")[-4000:]
    assert run is not None, f"no finished run of the schedule due at {due}; log:\n{daemon_log}"
    assert run.status == dg.DagsterRunStatus.SUCCESS, daemon_log
    assert run.tags["dagster/partition"] == "prod"
    training = root / "output" / "training.parquet"
    assert duckdb.connect().execute(f"SELECT count(*) FROM '{training}'").fetchall() == [(9,)]
    assert set(Store(root / "target").read_state("prod").pointers) == {
        "source.orders",
        "feature_group.spend",
        "exposure.training",
    }


def wait_for_scheduled_run(
    instance: dg.DagsterInstance, schedule: str, deadline: float
) -> dg.DagsterRun | None:
    """The schedule's first finished run, or None when none finished before the deadline."""
    finished = {dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE}
    while time.monotonic() < deadline:
        runs = instance.get_runs(dg.RunsFilter(tags={"dagster/schedule_name": schedule}))
        done = [r for r in runs if r.status in finished]
        if done:
            return done[0]
        time.sleep(2)
    return None


def stop_group(process: subprocess.Popen) -> None:
    """Terminates a process started with start_new_session, and everything it started."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    except ProcessLookupError:
        pass
