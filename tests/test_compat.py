"""Existing Seeknal projects run unchanged: file sources, `ref()` spellings, common templates,
exposures via `depends_on`, profiles and profile checks, and every construct that is not supported
yet reported by name while the rest runs."""

from __future__ import annotations

import json
import shutil
from datetime import date
from decimal import Decimal
from pathlib import Path

import duckdb
import pytest

from seeknal_dagster import engine
from seeknal_dagster import sql as sqlmod
from seeknal_dagster.errors import ExecutionError
from seeknal_dagster.specs import (
    Column,
    ExposureSpec,
    ProfileSpec,
    RuleCheck,
    RuleSpec,
    SourceSpec,
    UnsupportedSpec,
    parse_node,
    parse_python_file,
)
from seeknal_dagster.yaml_io import load_yaml_text

ECOMMERCE = Path(__file__).parent / "projects" / "ecommerce"
PARAMS = ("--params", '{"min_amount": 20}')


def cache(root: Path, node_id: str) -> Path:
    kind, name = node_id.split(".")
    return root / "target" / "cache" / kind / f"{name}.parquet"


def rows(path: Path, query: str = "SELECT * FROM t") -> list[tuple]:
    con = duckdb.connect()
    con.execute(f"CREATE VIEW t AS SELECT * FROM read_parquet('{path}')")
    return con.execute(query).fetchall()


@pytest.fixture
def ecommerce(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh copy of tests/projects/ecommerce (the CLI runs on the copy)."""
    for name in ("ECOM_CURRENCY", "CRM_HOST", "CRM_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    root = tmp_path / "ecommerce"
    shutil.copytree(ECOMMERCE, root, ignore=shutil.ignore_patterns("target", "output"))
    return root


# --- the e-commerce project end to end -------------------------------------------------------

UNSUPPORTED_WARNINGS = [
    "seeknal/pipelines/customer_scores.py: not supported yet: Python transform node "
    "transform.customer_scores (skipped)",
    "seeknal/semantic_models/revenue.yml: not supported yet: semantic_model node "
    "semantic_model.revenue (skipped)",
    "seeknal/sources/crm_customers.yml: not supported yet: postgresql source node "
    "source.crm_customers (skipped)",
]


def test_ecommerce_plans_and_runs_in_parallel_with_exact_outputs(ecommerce, seeknal) -> None:
    plan = seeknal(ecommerce, *PARAMS, "plan")
    assert plan.returncode == 0, plan.stderr
    for warning in UNSUPPORTED_WARNINGS:
        assert (plan.stdout + plan.stderr).count(warning) == 1, plan.stdout + plan.stderr
    assert "Nodes: 18" in plan.stdout
    # Seeknal's own project keys (version, profile, config-version, state_backend) and
    # profiles.yml are accepted silently.
    assert "unknown key" not in plan.stdout + plan.stderr

    result = seeknal(ecommerce, *PARAMS, "--format", "json", "run", "--parallel")

    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert {n["node"]: n["status"] for n in report["nodes"]} == {
        node: "SUCCESS"
        for node in (
            "source.raw_orders",
            "source.order_updates",
            "source.sales_events",
            "source.products",
            "source.inventory",
            "source.regions",
            "transform.orders_current",
            "transform.daily_revenue",
            "transform.sales_by_category",
            "transform.stock_value",
            "transform.revenue_by_region",
            "transform.large_orders",
            "transform.large_order_stats",
            "profile.products_stats",
            "exposure.revenue_report",
        )
    }
    for warning in UNSUPPORTED_WARNINGS:
        assert result.stderr.count(warning) == 1, result.stderr

    # The updates merged with QUALIFY: the latest version of each order wins.
    assert rows(
        cache(ecommerce, "transform.orders_current"),
        "SELECT order_id, amount, status, updated_at FROM t ORDER BY order_id",
    ) == [
        (1, 20.0, "completed", _ts("2024-03-01 09:00")),
        (2, 35.5, "completed", _ts("2024-03-01 10:00")),
        (3, 20.0, "completed", _ts("2024-03-02 12:00")),
        (4, 12.25, "completed", _ts("2024-03-02 08:30")),
        (5, 35.5, "refunded", _ts("2024-03-03 10:00")),
        (6, 24.5, "completed", _ts("2024-03-03 14:00")),
    ]
    # Common templates ({{ orders.dateCol }}, {{ rules.completedOrder }}) and an env default.
    assert rows(cache(ecommerce, "transform.daily_revenue")) == [
        (date(2024, 3, 1), 3, 75.5, "USD"),
        (date(2024, 3, 2), 1, 12.25, "USD"),
        (date(2024, 3, 3), 1, 24.5, "USD"),
    ]
    assert (ecommerce / "output" / "daily_revenue.csv").read_text() == (
        "order_date,orders,revenue,currency\n"
        "2024-03-01,3,75.5,USD\n"
        "2024-03-02,1,12.25,USD\n"
        "2024-03-03,1,24.5,USD\n"
    )
    # JSONL events joined to the CSV catalogue through {{ transforms.withProducts }}.
    assert rows(cache(ecommerce, "transform.sales_by_category")) == [
        ("bath", 5, Decimal("61.25")),
        ("home", 1, Decimal("35.50")),
        ("kitchen", 5, Decimal("50.00")),
    ]
    # The parquet snapshot, with window functions passed through to DuckDB.
    assert rows(cache(ecommerce, "transform.stock_value")) == [
        ("P1", 40, Decimal("400.00"), 1, 63),
        ("P2", 5, Decimal("177.50"), 3, 63),
        ("P3", 18, Decimal("220.50"), 2, 63),
        ("P4", 0, None, 4, 63),
    ]
    # The JSON source.
    assert rows(cache(ecommerce, "transform.revenue_by_region")) == [
        ("north", 3, 52.25),
        ("south", 2, 60.0),
    ]
    assert rows(cache(ecommerce, "transform.large_orders"), "SELECT order_id FROM t") == [
        (1,),
        (2,),
        (3,),
        (5,),
        (6,),
    ]
    assert rows(
        cache(ecommerce, "profile.products_stats"),
        "SELECT column_name, row_count, null_count, null_percent, distinct_count, min, max, "
        "mean, p25, median, p75 FROM t",
    ) == [
        ("product_id", 4, 0, 0.0, 4, "P1", "P4", None, None, None, None),
        ("name", 4, 0, 0.0, 4, "Bath towel", "Tea kettle", None, None, None, None),
        ("category", 4, 0, 0.0, 3, "bath", "kitchen", None, None, None, None),
        ("price", 4, 1, 25.0, 3, "10.00", "35.50", 19.25, 11.125, 12.25, 23.875),
    ]
    checks = {c["rule"]: (c["passed"], c["severity"], c["description"]) for c in report["checks"]}
    assert checks["rule.products_profile_check"] == (
        False,
        "WARN",
        "profile_check: null_percent of price is 25; warn when > 10",
    )
    assert checks["rule.orders_not_null"][0] is True
    assert checks["rule.revenue_range"][0] is True

    # A changed --params value re-runs exactly the node that uses it and its downstream node.
    again = seeknal(ecommerce, "--params", '{"min_amount": 30}', "--format", "json", "run")

    assert again.returncode == 0, again.stderr
    executed = {n["node"] for n in json.loads(again.stdout)["nodes"] if n["status"] != "CACHED"}
    assert executed == {"transform.large_orders", "transform.large_order_stats"}
    assert rows(cache(ecommerce, "transform.large_order_stats")) == [(2, 71.0)]


def _ts(text: str):  # noqa: ANN202 - a datetime
    from datetime import datetime

    return datetime.fromisoformat(text)


# --- sources: file formats, columns as descriptions, .yaml -----------------------------------


def test_source_columns_as_descriptions_only_keep_loaded_types() -> None:
    document = load_yaml_text(
        "kind: source\nname: o\nsource: csv\ntable: d.csv\ncolumns:\n"
        '  order_id: "Order identifier"\n  amount: {type: double, description: Total}\n'
        "  day: date\n  note:\n",
        "seeknal/sources/o.yml",
    )

    spec, problems, _ = parse_node(document, "seeknal/sources/o.yml")

    assert problems == []
    assert isinstance(spec, SourceSpec)
    assert spec.columns == (
        Column("order_id", None, "Order identifier"),
        Column("amount", "DOUBLE", "Total"),
        Column("day", "DATE", ""),
        Column("note", None, ""),
    )


@pytest.mark.parametrize("fmt", ["csv", "json", "jsonl", "parquet"])
def test_source_file_formats_are_supported(fmt: str) -> None:
    document = {"kind": "source", "name": "x", "source": fmt, "params": {"path": f"d.{fmt}"}}

    spec, problems, _ = parse_node(document, "seeknal/sources/x.yaml")

    assert problems == [] and isinstance(spec, SourceSpec) and spec.path == f"d.{fmt}"


# --- references: ref() spellings, DuckDB syntax passes through -------------------------------


def test_ref_spellings_in_ctes_joins_and_aliases_are_references() -> None:
    query = """
    WITH a AS (SELECT * FROM ref('source.orders')),
         b AS (SELECT * FROM ref( "source.updates" ) AS u)
    SELECT * FROM a
    JOIN ref ( 'source.customers' ) c ON c.id = a.customer_id
    LEFT JOIN source.regions r ON r.id = c.region_id
    """

    assert sqlmod.references(query) == [
        "source.orders",
        "source.updates",
        "source.customers",
        "source.regions",
    ]
    assert "ref" not in sqlmod.to_duckdb(query).lower().replace("regions", "")


def test_duckdb_syntax_reaches_duckdb_unchanged() -> None:
    query = (
        'SELECT * EXCLUDE (note), sum(x) OVER w AS running FROM ref("source.t") t\n'
        "WINDOW w AS (PARTITION BY k ORDER BY ts RANGE BETWEEN INTERVAL 1 DAY PRECEDING AND "
        "CURRENT ROW)\n"
        "QUALIFY ROW_NUMBER() OVER (PARTITION BY k ORDER BY ts DESC) = 1"
    )

    assert sqlmod.to_duckdb(query) == query.replace('ref("source.t")', '"source"."t"')


# --- exposures ------------------------------------------------------------------------------


def test_exposure_depends_on_and_params_format_path() -> None:
    document = {
        "kind": "exposure",
        "name": "report",
        "type": "file",
        "depends_on": [{"ref": "transform.daily"}],
        "params": {"format": "csv", "path": "output/daily.csv"},
    }

    spec, problems, _ = parse_node(document, "seeknal/exposures/report.yml")

    assert problems == []
    assert isinstance(spec, ExposureSpec)
    assert (spec.inputs, spec.format, spec.path) == (
        ("transform.daily",),
        "csv",
        "output/daily.csv",
    )


# --- profiles and profile checks -------------------------------------------------------------


@pytest.fixture
def table(tmp_path: Path) -> Path:
    path = tmp_path / "input.parquet"
    duckdb.sql(
        "COPY (SELECT * FROM (VALUES (1, 'a', 2.0, DATE '2024-01-02'), (2, NULL, 4.0, NULL), "
        "(3, 'a', NULL, DATE '2024-01-01'), (4, 'b', 10.0, DATE '2024-01-03')) "
        f"v(id, code, price, day)) TO '{path}' (FORMAT parquet)"
    )
    return path


def profile(tmp_path: Path, source: Path, columns: tuple[str, ...] | None = None) -> Path:
    spec = ProfileSpec(
        kind="profile",
        name="p",
        file="seeknal/p.yml",
        inputs=("source.t",),
        selected_columns=columns,
    )
    out = tmp_path / "profile.parquet"
    output = engine.execute_node(engine.connect(), spec, {"source.t": source}, {}, out)
    assert output.columns == engine.PROFILE_COLUMNS
    return out


def test_profile_one_row_per_column_with_every_statistic(tmp_path, table) -> None:
    out = profile(tmp_path, table)

    assert rows(out) == [
        ("id", "INTEGER", 4, 0, 0.0, 4, "1", "4", 2.5, 1.75, 2.5, 3.25),
        ("code", "VARCHAR", 4, 1, 25.0, 2, "a", "b", None, None, None, None),
        ("price", "DECIMAL(3,1)", 4, 1, 25.0, 3, "2.0", "10.0", 16 / 3, 3.0, 4.0, 7.0),
        ("day", "DATE", 4, 1, 25.0, 3, "2024-01-01", "2024-01-03", None, None, None, None),
    ]


def test_profile_of_an_empty_input_counts_zero_rows(tmp_path, table) -> None:
    empty = tmp_path / "empty.parquet"
    duckdb.sql(f"COPY (SELECT * FROM '{table}' WHERE false) TO '{empty}' (FORMAT parquet)")

    out = profile(tmp_path, empty, ("price",))

    assert rows(out) == [("price", "DECIMAL(3,1)", 0, 0, 0.0, 0, *([None] * 6))]


def test_profile_unknown_column_names_it_and_the_available_ones(tmp_path, table) -> None:
    with pytest.raises(ExecutionError) as raised:
        profile(tmp_path, table, ("price", "prize"))

    assert str(raised.value) == (
        "profile.p: seeknal/p.yml [profile.columns]: column(s) prize not in source.t; it has: "
        "id, code, price, day. Fix: correct the names under `profile.columns`"
    )


def check(metric: str, operator: str, threshold: float, column: str | None = "price") -> RuleCheck:
    columns = (column,) if column else ()
    return RuleCheck(
        "profile_check", columns, metric=metric, operator=operator, threshold=threshold
    )


@pytest.mark.parametrize(
    ("metric", "operator", "threshold", "passed"),
    [
        ("null_percent", ">", 20, False),
        ("null_percent", ">", 25, True),
        ("null_percent", ">=", 25, False),
        ("median", "<", 4, True),
        ("median", "<=", 4, False),
        ("max", "=", 10, False),
        ("min", "!=", 2, True),
        ("distinct_count", "!=", 3, True),
        ("mean", ">", 5, False),
    ],
)
def test_profile_check_comparisons(tmp_path, table, metric, operator, threshold, passed) -> None:
    out = profile(tmp_path, table)

    outcome = engine.run_check(
        engine.connect(), check(metric, operator, threshold), "profile.p", out
    )

    assert outcome.passed is passed


def test_profile_check_row_count_needs_no_column(tmp_path, table) -> None:
    out = profile(tmp_path, table)

    outcome = engine.run_check(engine.connect(), check("row_count", "=", 0, None), "profile.p", out)

    assert (outcome.passed, outcome.description) == (True, "row_count is 4; fail when = 0")


@pytest.mark.parametrize(
    ("metric", "column", "message"),
    [
        ("mean", "code", "mean of code is not computed: code is VARCHAR, not a number"),
        ("max", "day", "max of day is '2024-01-03', not a number (day is DATE)"),
        ("max", "cost", "column 'cost' is not profiled by profile.p; profiled columns: id, code"),
    ],
)
def test_profile_check_errors_name_the_column(tmp_path, table, metric, column, message) -> None:
    out = profile(tmp_path, table)

    with pytest.raises(ExecutionError, match=message.replace("(", r"\(").replace(")", r"\)")):
        engine.run_check(engine.connect(), check(metric, ">", 1, column), "profile.p", out)


def test_profile_check_rule_warn_is_warn_and_fail_is_error() -> None:
    document = load_yaml_text(
        "kind: rule\nname: r\ninputs: [{ref: profile.p}]\nrule:\n  type: profile_check\n"
        "  checks:\n    - {metric: row_count, fail: '= 0'}\n"
        "    - {metric: avg, column: price, warn: '> 50', fail: '>= 1e3'}\n",
        "seeknal/rules/r.yml",
    )

    spec, problems, _ = parse_node(document, "seeknal/rules/r.yml")

    assert problems == [] and isinstance(spec, RuleSpec)
    assert [(c.metric, c.columns, c.operator, c.threshold, c.severity) for c in spec.checks] == [
        ("row_count", (), "=", 0.0, "error"),
        ("mean", ("price",), ">", 50.0, "warn"),
        ("mean", ("price",), ">=", 1000.0, "error"),
    ]


@pytest.mark.parametrize(
    ("check_yaml", "key", "words"),
    [
        ("{metric: nul_percent, column: a, warn: '> 1'}", "rule.checks[0].metric", "null_percent"),
        ("{metric: max, warn: '> 1'}", "rule.checks[0].column", "per column"),
        ("{metric: max, column: a}", "rule.checks[0]", "`warn:` and/or `fail:`"),
        ("{metric: max, column: a, fail: 'over 9'}", "rule.checks[0].fail", "'over 9'"),
        ("{metric: max, column: a, fail: 9}", "rule.checks[0].fail", "such as '> 50'"),
    ],
)
def test_profile_check_rule_problems(check_yaml: str, key: str, words: str) -> None:
    document = load_yaml_text(
        "kind: rule\nname: r\ninputs: [{ref: profile.p}]\nrule:\n  type: profile_check\n"
        f"  checks:\n    - {check_yaml}\n",
        "seeknal/rules/r.yml",
    )

    _, problems, _ = parse_node(document, "seeknal/rules/r.yml")

    assert [p.key for p in problems] == [key]
    assert words in problems[0].message


PRODUCTS = {
    "data/products.csv": "id,price\n1,2.5\n2,\n",
    "seeknal/sources/products.yml": (
        "kind: source\nname: products\nsource: csv\ntable: data/products.csv\n"
    ),
}


def test_profile_check_on_a_node_that_is_not_a_profile_is_rejected(make_project, seeknal) -> None:
    root = make_project(
        {
            **PRODUCTS,
            "seeknal/rules/r.yml": (
                "kind: rule\nname: r\ninputs: [{ref: source.products}]\nrule:\n"
                "  type: profile_check\n  checks: [{metric: row_count, fail: '= 0'}]\n"
            ),
        }
    )

    result = seeknal(root, "plan")

    assert result.returncode == 1
    assert (
        "seeknal/rules/r.yml [inputs]: a profile_check rule checks a profile, but "
        "source.products is a source" in result.stderr
    )


def test_profile_with_two_inputs_is_rejected() -> None:
    document = {"kind": "profile", "name": "p", "inputs": [{"ref": "a.b"}, {"ref": "c.d"}]}

    _, problems, _ = parse_node(document, "seeknal/p.yml")

    assert [(p.key, p.message) for p in problems] == [
        ("inputs", "a profile describes exactly one node, found 2 inputs")
    ]


def test_profile_fail_level_check_fails_the_run(make_project, seeknal) -> None:
    root = make_project(
        {
            **PRODUCTS,
            "seeknal/profiles/stats.yml": (
                "kind: profile\nname: stats\ninputs: [{ref: source.products}]\n"
                "profile: {columns: [price]}\n"
            ),
            "seeknal/rules/stats_check.yml": (
                "kind: rule\nname: stats_check\ninputs: [{ref: profile.stats}]\nrule:\n"
                "  type: profile_check\n  checks:\n"
                "    - {metric: null_percent, column: price, fail: '> 10'}\n"
            ),
        }
    )

    result = seeknal(root, "--format", "json", "run")

    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert [(c["rule"], c["passed"], c["severity"]) for c in report["checks"]] == [
        ("rule.stats_check", False, "ERROR")
    ]
    assert rows(cache(root, "profile.stats"), "SELECT column_name, null_percent FROM t") == [
        ("price", 50.0)
    ]


# --- constructs not supported yet: reported by name, the rest runs ---------------------------

BASE = {
    "data/orders.csv": "id,amount\n1,5\n2,7\n",
    "seeknal/sources/orders.yml": "kind: source\nname: orders\nsource: csv\ntable: data/orders.csv\n",
    "seeknal/transforms/totals.yml": (
        "kind: transform\nname: totals\ninputs: [{ref: source.orders}]\n"
        "transform: SELECT sum(amount) AS total FROM source.orders\n"
    ),
}

PYTHON_PIPELINE = """\
from seeknal.pipeline import feature_group, transform


@transform(name="scored", inputs=["source.orders"])
def score(ctx):
    return ctx.ref("source.orders")


@feature_group
def customer_features(ctx):
    return None
"""


def consumer(ref: str, via_sql: bool = False) -> str:
    lines = ["kind: transform", "name: consumer"]
    if not via_sql:
        lines += ["inputs:", f"  - ref: {ref}"]
        return "\n".join([*lines, "transform: SELECT 1 AS one"]) + "\n"
    return "\n".join([*lines, f"transform: SELECT * FROM {ref}"]) + "\n"


@pytest.mark.parametrize(
    "kind", ["semantic_model", "metric", "model", "aggregation", "second_order_aggregation"]
)
def test_unsupported_kind_reported_once_and_the_rest_runs(make_project, seeknal, kind) -> None:
    root = make_project({**BASE, f"seeknal/other/{kind}.yml": f"kind: {kind}\nname: thing\n"})

    result = seeknal(root, "run")

    assert result.returncode == 0, result.stderr
    output = result.stdout + result.stderr
    assert output.count("not supported yet") == 1
    assert f"seeknal/other/{kind}.yml: not supported yet: {kind} node {kind}.thing (skipped)" in (
        output
    )
    assert rows(cache(root, "transform.totals")) == [(12,)]


@pytest.mark.parametrize("kind", ["metric", "second_order_aggregation"])
def test_supported_node_depending_on_unsupported_kind_names_both(make_project, seeknal, kind):
    root = make_project(
        {
            **BASE,
            f"seeknal/other/{kind}.yml": f"kind: {kind}\nname: thing\n",
            "seeknal/transforms/consumer.yml": consumer(f"{kind}.thing"),
        }
    )

    result = seeknal(root, "plan")

    assert result.returncode == 1
    assert (
        f"seeknal/transforms/consumer.yml [inputs]: transform.consumer depends on {kind}.thing "
        f"(seeknal/other/{kind}.yml), a {kind} node, which is not supported yet" in result.stderr
    )


def test_python_pipeline_nodes_reported_by_name_and_the_rest_runs(make_project, seeknal) -> None:
    root = make_project({**BASE, "seeknal/pipelines/scores.py": PYTHON_PIPELINE})

    result = seeknal(root, "run")

    assert result.returncode == 0, result.stderr
    output = result.stdout + result.stderr
    assert output.count("not supported yet") == 2
    assert (
        "seeknal/pipelines/scores.py: not supported yet: Python transform node "
        "transform.scored (skipped)" in output
    )
    assert (
        "seeknal/pipelines/scores.py: not supported yet: Python feature_group node "
        "feature_group.customer_features (skipped)" in output
    )
    assert rows(cache(root, "transform.totals")) == [(12,)]


def test_supported_node_depending_on_python_node_names_both(make_project, seeknal) -> None:
    root = make_project(
        {
            **BASE,
            "seeknal/pipelines/scores.py": PYTHON_PIPELINE,
            "seeknal/transforms/consumer.yml": consumer("transform.scored"),
        }
    )

    result = seeknal(root, "plan")

    assert result.returncode == 1
    assert (
        "transform.consumer depends on transform.scored (seeknal/pipelines/scores.py), a Python "
        "transform node, which is not supported yet" in result.stderr
    )


@pytest.mark.parametrize(
    ("text", "warning"),
    [
        (
            "import os\n",
            "Python pipeline file; no `@transform`/`@source`/... node found in it (skipped)",
        ),
        ("def broken(:\n", "Python pipeline file (skipped; it does not parse at line 1)"),
    ],
)
def test_python_file_without_nodes_is_reported_not_crashed_on(text: str, warning: str) -> None:
    specs, warnings = parse_python_file(text, "seeknal/pipelines/helpers.py")

    assert specs == []
    assert warnings == [f"seeknal/pipelines/helpers.py: not supported yet: {warning}"]


def test_python_node_name_comes_from_decorator_else_function() -> None:
    specs, _ = parse_python_file(PYTHON_PIPELINE, "seeknal/p.py")

    assert [(s.id, s.inputs, s.what) for s in specs] == [
        ("transform.scored", ("source.orders",), "Python transform"),
        ("feature_group.customer_features", (), "Python feature_group"),
    ]


POSTGRES = """\
kind: source
name: crm
source: postgresql
table: public.customers
params:
  password: "{{ env:CRM_SECRET_NEVER_SET }}"
"""


@pytest.mark.parametrize("connection", ["postgresql", "iceberg", "hive"])
def test_connection_source_reported_and_the_rest_runs(make_project, seeknal, connection) -> None:
    node = POSTGRES.replace("postgresql", connection)
    root = make_project({**BASE, "seeknal/sources/crm.yml": node})

    result = seeknal(root, "run")

    assert result.returncode == 0, result.stderr
    output = result.stdout + result.stderr
    assert output.count("not supported yet") == 1
    assert (
        f"seeknal/sources/crm.yml: not supported yet: {connection} source node source.crm "
        "(skipped)" in output
    )
    assert rows(cache(root, "transform.totals")) == [(12,)]


def test_node_reading_a_connection_source_names_both(make_project, seeknal) -> None:
    root = make_project(
        {
            **BASE,
            "seeknal/sources/crm.yml": POSTGRES,
            "seeknal/transforms/consumer.yml": consumer("source.crm", via_sql=True),
            "seeknal/transforms/listed.yml": consumer("source.crm").replace("consumer", "listed"),
        }
    )

    result = seeknal(root, "plan")

    assert result.returncode == 1
    assert (
        "seeknal/transforms/consumer.yml [transform]: the SQL reads source.crm, a postgresql "
        "source node, which is not supported yet" in result.stderr
    )
    assert (
        "seeknal/transforms/listed.yml [inputs]: transform.listed depends on source.crm "
        "(seeknal/sources/crm.yml), a postgresql source node, which is not supported yet"
        in result.stderr
    )


def test_connection_source_spec_is_unsupported_not_a_problem() -> None:
    spec, problems, _ = parse_node(load_yaml_text(POSTGRES, "crm.yml"), "crm.yml")

    assert problems == []
    assert isinstance(spec, UnsupportedSpec) and spec.what == "postgresql source"


def test_misspelt_file_source_type_is_an_error_with_a_suggestion() -> None:
    document = {"kind": "source", "name": "x", "source": "cvs", "table": "d.csv"}

    _, problems, _ = parse_node(document, "seeknal/sources/x.yml")

    assert [(p.key, p.message) for p in problems] == [
        ("source", "unknown source type 'cvs' (did you mean 'csv'?)")
    ]
