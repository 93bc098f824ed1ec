"""`seeknal run` end to end: the real CLI on small projects, reading the parquet it wrote."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import cache_file as cache
from conftest import parquet_rows as read

from seeknal_dagster.storage import Store

ORDERS = "order_id,customer_id,amount,ordered_at\n" + "".join(
    f"{i},{i % 3 + 1},{i * 10.5},2024-01-{i:02d} 10:00:00\n" for i in range(1, 10)
)
CUSTOMERS = "customer_id,country\n1,NO\n2,SE\n3,DK\n"

SHOP = {
    "data/orders.csv": ORDERS,
    "data/customers.csv": CUSTOMERS,
    "seeknal/sources/orders.yml": """
kind: source
name: orders
source: csv
table: data/orders.csv
columns:
  order_id: integer
  customer_id: integer
  amount: {type: double, description: Order total}
  ordered_at: timestamp
""",
    "seeknal/sources/customers.yml": """
kind: source
name: customers
source: csv
table: data/customers.csv
columns:
  customer_id: integer
  country: string
""",
    "seeknal/transforms/enriched.yml": """
kind: transform
name: enriched
inputs: [{ref: source.orders}, {ref: source.customers}]
transform: |
  SELECT o.order_id, o.customer_id, o.amount, o.ordered_at, c.country
  FROM source.orders o JOIN ref('source.customers') c USING (customer_id)
""",
    "seeknal/transforms/country_totals.yml": """
kind: transform
name: country_totals
inputs: [{ref: source.customers}]
transform: SELECT country, count(*) AS n FROM source.customers GROUP BY country
""",
    "seeknal/feature_groups/order_features.yml": """
kind: feature_group
name: order_features
entity: {name: customer, join_keys: [customer_id]}
materialization: {event_time_col: ordered_at}
inputs: [{ref: transform.enriched}]
features:
  order_id: {dtype: integer}
  amount: {dtype: double}
""",
    "seeknal/feature_groups/spend.yml": """
kind: feature_group
name: spend
entity: {name: customer, join_keys: [customer_id]}
materialization: {event_time_col: ordered_at}
inputs: [{ref: transform.enriched}]
transform: |
  SELECT customer_id, ordered_at,
         sum(amount) OVER (PARTITION BY customer_id ORDER BY ordered_at) AS spend_to_date
  FROM transform.enriched
features:
  spend_to_date: {dtype: double}
""",
    "seeknal/exposures/training.yml": """
kind: exposure
name: training
type: file
path: output/training.parquet
inputs: [{ref: feature_group.order_features}, {ref: feature_group.spend}]
""",
}


def test_run_writes_every_output_and_the_export(make_project, seeknal):
    root = make_project(SHOP)

    result = seeknal(root, "run")

    assert result.returncode == 0, result.stderr
    assert "Executed:" in result.stdout and "Successful:   7" in result.stdout
    assert read(cache(root, "source.customers")) == [(1, "NO"), (2, "SE"), (3, "DK")]
    assert read(cache(root, "transform.country_totals")) == [("DK", 1), ("NO", 1), ("SE", 1)]
    training = read(
        root / "output" / "training.parquet",
        "SELECT order_id, customer_id, amount, spend_to_date FROM t ORDER BY 1",
    )
    assert len(training) == 9
    # Point in time: spend_to_date as of each order includes that order and earlier ones only.
    assert training[0] == (1, 2, 10.5, 10.5)
    assert training[3] == (4, 2, 42.0, 52.5)
    assert read(cache(root, "exposure.training"), "SELECT count(*) FROM t") == [(9,)]


def test_run_casts_features_to_declared_dtypes(make_project, seeknal):
    root = make_project(SHOP)

    assert seeknal(root, "run").returncode == 0

    types = read(
        cache(root, "feature_group.order_features"),
        "SELECT column_name, column_type FROM (DESCRIBE t)",
    )
    assert types == [
        ("customer_id", "INTEGER"),
        ("ordered_at", "TIMESTAMP"),
        ("order_id", "INTEGER"),
        ("amount", "DOUBLE"),
    ]


def test_run_again_caches_everything_without_importing_dagster(make_project, seeknal):
    root = make_project(SHOP)
    assert seeknal(root, "run").returncode == 0

    probe = (
        "import sys\n"
        "from seeknal_dagster.cli import main\n"
        "try:\n"
        f"    main(['--project', {str(root)!r}, 'run'])\n"
        "except SystemExit as exit:\n"
        "    assert not exit.code, exit.code\n"
        "print('DAGSTER_IMPORTED' if 'dagster' in sys.modules else 'DAGSTER_NOT_IMPORTED')\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=root)

    assert result.returncode == 0, result.stderr
    assert "DAGSTER_NOT_IMPORTED" in result.stdout
    assert "Nothing to do" in result.stdout
    assert result.stdout.count("CACHED") == 0 or "Cached:       7" in result.stdout
    assert "Executed:     0" in result.stdout


def test_run_after_source_change_runs_only_it_and_downstream(make_project, seeknal):
    root = make_project(SHOP)
    assert seeknal(root, "run").returncode == 0

    (root / "data" / "orders.csv").write_text(ORDERS + "10,1,99.0,2024-01-10 10:00:00\n")
    result = seeknal(root, "--format", "json", "run")

    assert result.returncode == 0, result.stderr
    statuses = {n["node"]: n["status"] for n in json.loads(result.stdout)["nodes"]}
    assert statuses == {
        "source.orders": "SUCCESS",
        "source.customers": "CACHED",
        "transform.enriched": "SUCCESS",
        "transform.country_totals": "CACHED",
        "feature_group.order_features": "SUCCESS",
        "feature_group.spend": "SUCCESS",
        "exposure.training": "SUCCESS",
    }
    assert read(cache(root, "exposure.training"), "SELECT count(*) FROM t") == [(10,)]


def test_run_description_change_runs_nothing(make_project, seeknal):
    root = make_project(SHOP)
    assert seeknal(root, "run").returncode == 0
    node = root / "seeknal" / "transforms" / "enriched.yml"
    node.write_text(node.read_text() + "description: Orders with the customer's country\n")

    result = seeknal(root, "run")

    assert result.returncode == 0
    assert "Nothing to do" in result.stdout


def test_run_failing_node_skips_descendants_and_keeps_its_pointer(make_project, seeknal):
    root = make_project(SHOP)
    assert seeknal(root, "run").returncode == 0
    store = Store(root / "target")
    before = store.read_state("prod").pointers["transform.enriched"]
    node = root / "seeknal" / "transforms" / "enriched.yml"
    node.write_text(node.read_text().replace("c.country", "c.no_such_column"))
    # The independent branch changes too, so it must still run to the end.
    (root / "data" / "customers.csv").write_text(CUSTOMERS + "4,FI\n")

    result = seeknal(root, "--format", "json", "run")

    assert result.returncode == 1
    statuses = {n["node"]: n["status"] for n in json.loads(result.stdout)["nodes"]}
    assert statuses["transform.enriched"] == "FAILED"
    assert statuses["feature_group.spend"] == "SKIPPED"
    assert statuses["exposure.training"] == "SKIPPED"
    assert statuses["transform.country_totals"] == "SUCCESS"
    assert "transform.enriched" in result.stderr
    assert "no_such_column" in result.stderr
    assert "seeknal/transforms/enriched.yml" in result.stderr
    assert store.read_state("prod").pointers["transform.enriched"] == before
    assert read(cache(root, "transform.country_totals"), "SELECT count(*) FROM t") == [(4,)]


def test_run_parallel_and_sequential_write_identical_data(make_project, seeknal):
    sequential = make_project(SHOP)
    parallel = make_project(SHOP)
    single = make_project(SHOP)

    assert seeknal(sequential, "run").returncode == 0
    result = seeknal(parallel, "run", "--parallel")
    assert result.returncode == 0, result.stderr
    assert "[Layer 1/4] Running 2 node(s) in parallel..." in result.stdout
    assert seeknal(single, "run", "--parallel", "--max-workers", "1").returncode == 0

    for node_id in (
        "source.orders",
        "transform.enriched",
        "feature_group.spend",
        "exposure.training",
    ):
        expected = read(cache(sequential, node_id))
        assert read(cache(parallel, node_id)) == expected
        assert read(cache(single, node_id)) == expected


def test_show_plan_prints_layers_with_inputs_and_runs_nothing(make_project, seeknal):
    root = make_project(SHOP)

    result = seeknal(root, "run", "--show-plan")

    assert result.returncode == 0
    assert "Layer 1: 2 nodes (0 dependencies)" in result.stdout
    assert "Layer 2: 2 nodes (depends on Layer 1)" in result.stdout
    assert "  - enriched → [orders, customers]" in result.stdout
    assert "Layer 4: 1 node (depends on Layer 3)" in result.stdout
    assert not (root / "target" / "state").exists()


def test_dry_run_lists_what_would_run_and_writes_nothing(make_project, seeknal):
    root = make_project(SHOP)

    result = seeknal(root, "run", "--dry-run")

    assert result.returncode == 0
    assert "RUN     transform.enriched" in result.stdout
    assert "Would execute: 7" in result.stdout
    assert not (root / "target" / "snapshots").exists()
    assert not (root / "output").exists()


def test_select_with_upstream_runs_only_that_branch(make_project, seeknal):
    root = make_project(SHOP)

    result = seeknal(root, "--format", "json", "run", "--select", "+country_totals")

    assert result.returncode == 0, result.stderr
    nodes = [n["node"] for n in json.loads(result.stdout)["nodes"]]
    assert nodes == ["source.customers", "transform.country_totals"]
    assert not cache(root, "transform.enriched").exists()


def test_select_unknown_name_suggests_the_closest(make_project, seeknal):
    root = make_project(SHOP)

    result = seeknal(root, "run", "--select", "enriched_x")

    assert result.returncode == 1
    assert "did you mean 'enriched'" in result.stderr


def test_run_refused_while_another_command_writes_production(make_project, seeknal):
    root = make_project(SHOP)
    store = Store(root / "target")

    with store.environment_lock("prod", "seeknal run (test holder)"):
        result = seeknal(root, "run")

    assert result.returncode == 1
    assert "busy" in result.stderr and "seeknal run (test holder)" in result.stderr
    assert not (root / "target" / "state").exists()


def test_error_rule_blocks_downstream_and_fails_the_run(make_project, seeknal):
    files = dict(SHOP)
    files["seeknal/rules/amount_small.yml"] = """
kind: rule
name: amount_small
inputs: [{ref: transform.enriched}]
rule: {type: range, column: amount, params: {max: 50, severity: error}}
"""
    root = make_project(files)

    result = seeknal(root, "--format", "json", "run")

    assert result.returncode == 1
    report = json.loads(result.stdout)
    statuses = {n["node"]: n["status"] for n in report["nodes"]}
    assert statuses["transform.enriched"] == "SUCCESS"
    assert statuses["feature_group.spend"] == "SKIPPED"
    rule = next(c for c in report["checks"] if c["rule"] == "rule.amount_small")
    assert rule["passed"] is False
    assert "above the maximum 50" in rule["description"]

    # The failed output is kept but never used: running again does not let data through.
    again = seeknal(root, "--format", "json", "run")

    assert again.returncode == 1
    statuses = {n["node"]: n["status"] for n in json.loads(again.stdout)["nodes"]}
    assert statuses["transform.enriched"] == "SUCCESS"
    assert statuses["exposure.training"] == "SKIPPED"
    assert not (root / "output" / "training.parquet").exists()


def test_warn_rule_is_reported_and_the_run_succeeds(make_project, seeknal):
    files = dict(SHOP)
    files["seeknal/rules/amount_small.yml"] = """
kind: rule
name: amount_small
inputs: [{ref: transform.enriched}]
rule: {type: range, column: amount, params: {max: 50, severity: warn}}
"""
    root = make_project(files)

    result = seeknal(root, "run")

    assert result.returncode == 0, result.stderr
    assert "check rule.amount_small on transform.enriched: WARN" in result.stdout
    assert cache(root, "exposure.training").exists()


def test_declared_type_mismatch_names_column_line_and_value(make_project, seeknal):
    files = dict(SHOP)
    files["data/orders.csv"] = ORDERS + "10,1,not-a-number,2024-01-10 10:00:00\n"
    root = make_project(files)

    result = seeknal(root, "run", "--select", "orders")

    assert result.returncode == 1
    assert "amount" in result.stderr and "not-a-number" in result.stderr
    assert "line 11" in result.stderr
    assert "seeknal/sources/orders.yml" in result.stderr


@pytest.mark.slow
def test_example_runs_in_parallel_end_to_end(tmp_path, seeknal):
    import shutil

    example = Path(__file__).resolve().parent.parent / "examples" / "fraud_detection"
    root = tmp_path / "fraud_detection"
    shutil.copytree(example, root, ignore=shutil.ignore_patterns("data", "target", "output"))
    generated = subprocess.run(
        [sys.executable, str(root / "generate_data.py"), "--transactions", "10000"],
        capture_output=True,
        text=True,
    )
    assert generated.returncode == 0, generated.stderr

    plan = seeknal(root, "run", "--show-plan")
    result = seeknal(root, "run", "--parallel")

    for count, layer in zip((8, 4, 2, 1), range(1, 5), strict=True):
        assert f"Layer {layer}: {count} node" in plan.stdout
    assert result.returncode == 0, result.stderr
    training = cache(root, "exposure.training_data")
    assert read(training, "SELECT count(*), count(DISTINCT transaction_id) FROM t") == [
        (10000, 10000)
    ]
    columns = {c for (c,) in read(training, "SELECT column_name FROM (DESCRIBE t)")}
    assert {"customer_id", "txn_amount", "merchant_risk_score"} <= columns
    again = seeknal(root, "run")
    assert "Nothing to do" in again.stdout


def test_edited_rule_is_checked_again_and_then_cached(make_project, seeknal):
    files = dict(SHOP)
    rule = """
kind: rule
name: amount_small
inputs: [{ref: transform.enriched}]
rule: {type: range, column: amount, params: {max: 50, severity: warn}}
"""
    files["seeknal/rules/amount_small.yml"] = rule
    root = make_project(files)
    assert seeknal(root, "run").returncode == 0
    (root / "seeknal/rules/amount_small.yml").write_text(rule.replace("max: 50", "max: 5000"))

    again = seeknal(root, "--format", "json", "run")
    third = seeknal(root, "run")

    assert again.returncode == 0, again.stderr
    report = json.loads(again.stdout)
    statuses = {n["node"]: n["status"] for n in report["nodes"]}
    assert statuses["transform.enriched"] == "SUCCESS"
    assert statuses["source.orders"] == "CACHED"
    rule_check = next(c for c in report["checks"] if c["rule"] == "rule.amount_small")
    assert rule_check["passed"] is True
    assert "Nothing to do" in third.stdout


def test_full_rebuild_never_changes_a_snapshot_other_pointers_use(make_project, seeknal):
    root = make_project(SHOP)
    assert seeknal(root, "run").returncode == 0
    store = Store(root / "target")
    before = {n: p.snapshot for n, p in store.read_state("prod").pointers.items()}
    contents = {n: (root / "target" / s).read_bytes() for n, s in before.items()}

    assert seeknal(root, "run", "--full").returncode == 0

    for node_id, snapshot in before.items():
        assert (root / "target" / snapshot).read_bytes() == contents[node_id]
    assert "Nothing to do" in seeknal(root, "run").stdout


def test_select_without_its_stale_inputs_is_refused_before_running(make_project, seeknal):
    root = make_project(SHOP)

    result = seeknal(root, "run", "--select", "enriched")

    assert result.returncode == 1
    assert "transform.enriched needs source.orders" in result.stderr
    assert "--select +enriched" in result.stderr
    assert not (root / "target" / "snapshots").exists()
