"""The Dagster side: assets as the UI shows them, checks from declarations, the IO manager for
Python assets downstream of YAML nodes, and the default executor."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import duckdb
import pandas as pd
import pyarrow as pa
import pytest

from seeknal_dagster.dagster_defs import (
    ENV_PARTITIONS,
    asset_key,
    preview_markdown,
    seeknal_definitions,
    workspace_file,
)
from seeknal_dagster.project import load_project
from seeknal_dagster.storage import Store

REPO = Path(__file__).resolve().parent.parent

ORDERS = "order_id,customer_id,amount,ordered_at\n" + "".join(
    f"{i},{i % 3 + 1},{i * 10.5},2024-01-{i:02d} 10:00:00\n" for i in range(1, 10)
)

SHOP = {
    "data/orders.csv": ORDERS,
    "seeknal/orders.yml": """
kind: source
name: orders
description: One row per order.
owner: shop-data
tags: [raw, sales]
source: csv
table: data/orders.csv
columns:
  order_id: integer
  customer_id: {type: integer, description: Who ordered}
  amount: double
  ordered_at: timestamp
""",
    "seeknal/spend.yml": """
kind: feature_group
name: spend
owner: ml@shop.example
entity: {name: customer, join_keys: [customer_id]}
materialization: {event_time_col: ordered_at}
inputs: [{ref: source.orders}]
transform: |
  SELECT customer_id, ordered_at,
         sum(amount) OVER (PARTITION BY customer_id ORDER BY ordered_at) AS spend_to_date
  FROM source.orders
features:
  spend_to_date: {dtype: double, description: Spend so far}
""",
    "seeknal/training.yml": """
kind: exposure
name: training
type: file
path: output/training.parquet
inputs: [{ref: feature_group.spend}]
""",
}


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test() as test_instance:
        test_instance.add_dynamic_partitions(ENV_PARTITIONS.name, ["prod"])
        yield test_instance


def materialize(defs: dg.Definitions, instance: dg.DagsterInstance) -> dg.ExecuteInProcessResult:
    job = defs.resolve_implicit_global_asset_job_def()
    return job.execute_in_process(instance=instance, partition_key="prod", raise_on_error=False)


def metadata_of(result: dg.ExecuteInProcessResult, node_id: str) -> dict:
    for event in result.get_asset_materialization_events():
        if event.asset_key == asset_key(node_id):
            return {k: v.value for k, v in event.materialization.metadata.items()}
    raise AssertionError(f"{node_id} was not materialised")


def checks_of(result: dg.ExecuteInProcessResult) -> dict[tuple[str, str], dg.AssetCheckEvaluation]:
    return {
        (".".join(e.asset_key.path), e.check_name): e for e in result.get_asset_check_evaluations()
    }


def test_materialize_through_dagster_records_metadata_and_checks(make_project, instance):
    root = make_project(SHOP)

    result = materialize(seeknal_definitions(root), instance)

    assert result.success
    spend = metadata_of(result, "feature_group.spend")
    assert spend["dagster/row_count"] == 9
    assert [c.name for c in spend["dagster/column_schema"].columns] == [
        "customer_id",
        "ordered_at",
        "spend_to_date",
    ]
    preview = spend["seeknal/preview"]
    assert preview.splitlines()[0] == "| customer\\_id | ordered\\_at | spend\\_to\\_date |"
    assert len(preview.splitlines()) == 2 + 5  # header, rule, five rows
    assert Path(spend["seeknal/output"]) == root / "target/cache/feature_group/spend.parquet"
    assert spend["seeknal/environment"] == "prod"
    assert spend["seeknal/duration_s"] >= 0
    checks = checks_of(result)
    assert checks["source.orders", "declared_columns"].passed
    assert checks["source.orders", "declared_columns"].description == (
        "all 4 declared column(s) present"
    )
    assert checks["feature_group.spend", "entity_keys_not_null"].passed
    assert checks["feature_group.spend", "entity_keys_unique"].passed
    assert ("exposure.training", "declared_columns") not in checks
    assert Store(root / "target").read_state("prod").pointers["exposure.training"].rows == 9
    assert (root / "output" / "training.parquet").is_file()


def test_assets_carry_what_the_ui_shows(make_project):
    root = make_project(SHOP)

    defs = seeknal_definitions(root)
    orders = defs.resolve_assets_def(asset_key("source.orders")).specs_by_key
    source = orders[asset_key("source.orders")]
    spend = defs.resolve_assets_def(asset_key("feature_group.spend")).specs_by_key[
        asset_key("feature_group.spend")
    ]

    assert source.description == "One row per order."
    assert source.owners == ["team:shop-data"]
    assert set(source.tags) >= {"raw", "sales"}
    assert source.kinds == {"duckdb", "csv"}
    assert source.group_name == "sources"
    schema = source.metadata["dagster/column_schema"]
    assert [(c.name, c.type) for c in schema.columns] == [
        ("order_id", "INTEGER"),
        ("customer_id", "INTEGER"),
        ("amount", "DOUBLE"),
        ("ordered_at", "TIMESTAMP"),
    ]
    assert schema.columns[1].description == "Who ordered"
    assert spend.owners == ["ml@shop.example"]
    assert spend.kinds == {"duckdb", "parquet"}
    sql = spend.metadata["seeknal/sql"].value
    assert sql.startswith("```sql\nSELECT customer_id, ordered_at,") and sql.endswith("\n```")
    declared = [(c.name, c.type) for c in spend.metadata["dagster/column_schema"].columns]
    assert declared == [("customer_id", "?"), ("ordered_at", "?"), ("spend_to_date", "DOUBLE")]


def test_assets_show_the_category_of_each_saved_plan(make_project, seeknal):
    root = make_project(SHOP)
    assert seeknal(root, "run").returncode == 0
    spend = root / "seeknal" / "spend.yml"
    spend.write_text(
        spend.read_text()
        .replace("AS spend_to_date", "AS spend_to_date, amount AS last_amount")
        .replace("features:\n", "features:\n  last_amount: {dtype: double}\n")
    )
    assert seeknal(root, "plan", "dev").returncode == 0

    defs = seeknal_definitions(root)

    def plan_entry(node_id: str) -> str | None:
        spec = defs.resolve_assets_def(asset_key(node_id)).specs_by_key[asset_key(node_id)]
        return spec.metadata.get("seeknal/plan/dev")

    spend_entry = plan_entry("feature_group.spend")
    assert spend_entry.startswith("NON_BREAKING - ") and "new feature: last_amount" in spend_entry
    assert plan_entry("exposure.training").startswith("DEPENDENT - upstream changed")
    assert plan_entry("source.orders") is None


def test_declared_type_the_output_lacks_fails_a_blocking_check(make_project, instance):
    files = dict(SHOP)
    # DuckDB stores HUGEINT in parquet as DOUBLE, so the output cannot have the declared type.
    files["seeknal/orders.yml"] = SHOP["seeknal/orders.yml"].replace(
        "order_id: integer", "order_id: hugeint\n  coupon: {description: not in the file}"
    )
    root = make_project(files)

    result = materialize(seeknal_definitions(root), instance)

    assert not result.success
    check = checks_of(result)["source.orders", "declared_columns"]
    assert not check.passed
    assert check.severity == dg.AssetCheckSeverity.ERROR
    assert check.description == (
        "missing column(s): coupon; type mismatch: order_id (declared HUGEINT, found DOUBLE)"
    )
    materialized = {".".join(e.asset_key.path) for e in result.get_asset_materialization_events()}
    assert materialized == {"source.orders"}  # blocking: nothing downstream ran


def test_null_entity_key_blocks_downstream(make_project, instance):
    files = dict(SHOP)
    files["seeknal/spend.yml"] = SHOP["seeknal/spend.yml"].replace(
        "SELECT customer_id,",
        "SELECT CASE WHEN order_id = 3 THEN NULL ELSE customer_id END AS customer_id,",
    )
    root = make_project(files)

    result = materialize(seeknal_definitions(root), instance)

    check = checks_of(result)["feature_group.spend", "entity_keys_not_null"]
    assert not check.passed and check.severity == dg.AssetCheckSeverity.ERROR
    assert check.description == "customer_id is 11.11% null (allowed 0%)"
    materialized = {".".join(e.asset_key.path) for e in result.get_asset_materialization_events()}
    assert "exposure.training" not in materialized


def test_duplicate_entity_keys_only_warn(make_project, instance):
    files = dict(SHOP)
    files["seeknal/spend.yml"] = SHOP["seeknal/spend.yml"].replace(
        "FROM source.orders",
        "FROM source.orders UNION ALL SELECT 1, TIMESTAMP '2024-01-03 10:00:00', 0",
    )
    root = make_project(files)

    result = materialize(seeknal_definitions(root), instance)

    assert result.success
    check = checks_of(result)["feature_group.spend", "entity_keys_unique"]
    assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN
    assert check.description == "1 duplicate row(s) on (customer_id, ordered_at)"
    assert metadata_of(result, "exposure.training")["dagster/row_count"] == 10


def test_rule_of_the_same_name_replaces_the_declared_check(make_project):
    files = dict(SHOP)
    files["seeknal/rule.yml"] = """
kind: rule
name: declared_columns
inputs: [{ref: source.orders}]
rule: {type: null, columns: [order_id]}
"""
    root = make_project(files)

    defs = seeknal_definitions(root)

    keys = defs.resolve_asset_graph().asset_check_keys
    assert dg.AssetCheckKey(asset_key("source.orders"), "declared_columns") in keys
    assert len([k for k in keys if k.asset_key == asset_key("source.orders")]) == 1


# --- Python assets downstream of YAML nodes ---------------------------------------------------

SPEND = dg.AssetIn(asset_key("feature_group.spend"))


@dg.asset(partitions_def=ENV_PARTITIONS, ins={"spend": SPEND})
def spend_frame(spend: pd.DataFrame) -> dg.MaterializeResult:
    return dg.MaterializeResult(
        metadata={"type": type(spend).__name__, "total": float(spend["spend_to_date"].max())}
    )


@dg.asset(partitions_def=ENV_PARTITIONS, ins={"spend": SPEND})
def spend_table(spend: pa.Table) -> dg.MaterializeResult:
    return dg.MaterializeResult(metadata={"type": type(spend).__name__, "rows": spend.num_rows})


@dg.asset(ins={"spend": SPEND})
def spend_file(spend: Path) -> dg.MaterializeResult:
    return dg.MaterializeResult(metadata={"path": str(spend)})


def user_definitions(root: Path) -> dg.Definitions:
    """What a user's definitions.py does (see the README section on Python assets)."""
    mine = dg.Definitions(
        assets=[spend_frame, spend_table, spend_file],
        jobs=[
            dg.define_asset_job("by_env", selection=["spend_frame", "spend_table"]),
            dg.define_asset_job("unpartitioned", selection=["spend_file"]),
        ],
    )
    return dg.Definitions.merge(seeknal_definitions(root), mine)


def test_python_assets_receive_node_outputs_by_annotation(make_project, instance):
    root = make_project(SHOP)
    defs = user_definitions(root)
    assert materialize(seeknal_definitions(root), instance).success

    by_env = defs.resolve_job_def("by_env").execute_in_process(
        instance=instance, partition_key="prod"
    )
    unpartitioned = defs.resolve_job_def("unpartitioned").execute_in_process(instance=instance)

    assert by_env.success and unpartitioned.success
    frame = metadata_of(by_env, "spend_frame")
    assert frame == {"type": "DataFrame", "total": 9 * 10.5 + 6 * 10.5 + 3 * 10.5}
    assert metadata_of(by_env, "spend_table") == {"type": "Table", "rows": 9}
    pointer = Store(root / "target").read_state("prod").pointers["feature_group.spend"]
    assert metadata_of(unpartitioned, "spend_file") == {
        "path": str(root / "target" / pointer.snapshot)
    }


def test_python_asset_without_upstream_output_fails_with_the_fix(make_project, instance):
    root = make_project(SHOP)
    defs = user_definitions(root)

    result = defs.resolve_job_def("by_env").execute_in_process(
        instance=instance, partition_key="prod", raise_on_error=False
    )

    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    assert "feature_group.spend has no output in environment 'prod'" in str(
        failure.step_failure_data.user_failure_data.description
    )


# --- defaults, workspace, preview --------------------------------------------------------------


def test_default_executor_is_in_process(make_project):
    root = make_project(
        {
            **SHOP,
            "seeknal_project.yml": "name: shop\nschedules:\n  - {name: hourly, cron: '@hourly'}\n",
        }
    )

    defs = seeknal_definitions(root)

    assert defs.resolve_implicit_global_asset_job_def().executor_def is dg.in_process_executor
    assert defs.resolve_job_def("hourly_job").executor_def is dg.in_process_executor
    # `seeknal run` picks in-process or multiprocess per run; launched without config (from the
    # UI's Jobs page) it runs in process too.
    run_executor = defs.resolve_job_def("seeknal_run").executor_def
    assert run_executor.config_schema.default_value == {"in_process": {}}


def dagster_env(root: Path, home: Path) -> dict[str, str]:
    return {**os.environ, "SEEKNAL_PROJECT_DIR": str(root), "DAGSTER_HOME": str(home)}


def test_dagster_asset_materialize_runs_in_process(make_project, tmp_path):
    root = make_project(SHOP)
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    with dg.DagsterInstance.from_config(str(home)) as instance:
        instance.add_dynamic_partitions(ENV_PARTITIONS.name, ["prod"])

    started = time.perf_counter()
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "dagster",
            "asset",
            "materialize",
            "-f",
            str(REPO / "definitions.py"),
        ]
        + ["--select", "*", "--partition", "prod"],
        env=dagster_env(root, home),
        cwd=root,
        capture_output=True,
        text=True,
        timeout=300,
    )
    elapsed = time.perf_counter() - started

    assert result.returncode == 0, result.stderr[-3000:]
    assert "Executing steps in process" in result.stderr
    assert "multiprocess" not in result.stderr
    assert (root / "output" / "training.parquet").is_file()
    assert elapsed < 60


def test_definitions_validate_passes_for_the_repository_workspace(make_project, tmp_path):
    root = make_project(SHOP)

    result = subprocess.run(
        [sys.executable, "-m", "dagster", "definitions", "validate", "-w", "workspace.yaml"],
        env=dagster_env(root, tmp_path),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )

    assert result.returncode == 0, result.stderr[-3000:]
    assert "Validation successful" in result.stdout + result.stderr


def test_definitions_of_an_invalid_project_name_every_problem(make_project):
    root = make_project({**SHOP, "data/orders.csv": b""})
    (root / "data" / "orders.csv").unlink()

    with pytest.raises(dg.DagsterInvariantViolationError, match="data file not found"):
        seeknal_definitions(root)


def test_preview_is_a_small_escaped_markdown_table(tmp_path):
    path = tmp_path / "t.parquet"
    con = duckdb.connect()
    con.execute(
        "COPY (SELECT i, 'a|b_' || repeat('x', 60) AS text, NULL::INT AS empty "
        f"FROM range(8) t(i)) TO '{path}' (FORMAT parquet)"
    )

    lines = preview_markdown(con, path).splitlines()

    assert lines[0] == "| i | text | empty |"
    assert lines[1] == "|---|---|---|"
    assert len(lines) == 7
    assert lines[2] == "| 0 | a\\|b\\_" + "x" * 35 + "… | null |"


def test_preview_of_an_empty_output_says_so(tmp_path):
    path = tmp_path / "t.parquet"
    con = duckdb.connect()
    con.execute(f"COPY (SELECT 1 AS a WHERE false) TO '{path}' (FORMAT parquet)")

    assert preview_markdown(con, path).endswith("*(no rows)*")


def test_workspace_file_loads_the_projects_own_definitions(make_project):
    plain = load_project(make_project(SHOP))
    custom_root = make_project({**SHOP, "definitions.py": "defs = None\n"})

    generated = workspace_file(plain).read_text()
    custom = workspace_file(load_project(custom_root)).read_text()

    assert "module_name: seeknal_dagster.dagster_defs" in generated
    assert "attribute: definitions_for_workspace" in generated
    assert f"relative_path: '{custom_root / 'definitions.py'}'" in custom
