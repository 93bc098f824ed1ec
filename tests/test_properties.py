"""Properties over generated projects: valid ones always load, plan and run the same way in
sequence and in parallel; damaged node files only ever raise the product's own errors."""

from __future__ import annotations

import random
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pytest
from conftest import run_seeknal
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from seeknal_dagster import plan as planning
from seeknal_dagster.errors import SeeknalError
from seeknal_dagster.manifest import fingerprints
from seeknal_dagster.project import load_project
from seeknal_dagster.runner import RunOptions, plan_run
from seeknal_dagster.storage import PROD, EnvState, Store

# --- generated projects ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Generated:
    """A project as files: every node outputs the integer columns (a, b)."""

    files: dict[str, str]
    edges: dict[str, tuple[str, ...]]  # node id -> its inputs


ONE_INPUT = [
    "SELECT a, b + 1 AS b FROM {0}",
    "SELECT a, b FROM {0} WHERE b % 2 = 0",
    "SELECT a, sum(b)::BIGINT AS b FROM {0} GROUP BY a",
    "SELECT a * 2 AS a, b FROM ref('{0}')",
    "WITH t AS (SELECT a, b FROM {0}) SELECT a, max(b) AS b FROM t GROUP BY a",
]
TWO_INPUTS = [
    "SELECT x.a, x.b + y.b AS b FROM {0} x JOIN {1} y USING (a)",
    "SELECT a, b FROM {0} UNION ALL SELECT a, b FROM {1}",
    "SELECT x.a, coalesce(y.b, 0) AS b FROM {0} x LEFT JOIN {1} y ON x.a = y.a",
]


@st.composite
def projects(draw: st.DrawFn) -> Generated:
    sources = draw(st.integers(1, 3))
    transforms = draw(st.integers(1, 8))
    files: dict[str, str] = {}
    edges: dict[str, tuple[str, ...]] = {}
    available: list[str] = []
    for index in range(sources):
        values = draw(st.lists(st.tuples(st.integers(0, 4), st.integers(-50, 50)), max_size=6))
        files[f"data/s{index}.csv"] = "a,b\n" + "".join(f"{a},{b}\n" for a, b in values)
        files[f"seeknal/sources/s{index}.yml"] = (
            f"kind: source\nname: s{index}\nsource: csv\ntable: data/s{index}.csv\n"
            "columns: {a: integer, b: integer}\n"
        )
        node_id = f"source.s{index}"
        edges[node_id] = ()
        available.append(node_id)
    for index in range(transforms):
        two = len(available) > 1 and draw(st.booleans())
        if two:
            inputs = tuple(draw(st.permutations(available))[:2])
            sql = draw(st.sampled_from(TWO_INPUTS)).format(*inputs)
        else:
            inputs = (draw(st.sampled_from(available)),)
            sql = draw(st.sampled_from(ONE_INPUT)).format(*inputs)
        listed = "".join(f"  - ref: {ref}\n" for ref in inputs)
        files[f"seeknal/transforms/t{index}.yml"] = (
            f"kind: transform\nname: t{index}\ninputs:\n{listed}transform: |\n  {sql}\n"
        )
        node_id = f"transform.t{index}"
        edges[node_id] = inputs
        available.append(node_id)
    return Generated(files, edges)


def write(root: Path, files: dict[str, str | bytes]) -> Path:
    for relative, content in {"seeknal_project.yml": "name: generated\n", **files}.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return root


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(projects())
def test_generated_project_loads_plans_and_layers_respect_edges(generated: Generated) -> None:
    with tempfile.TemporaryDirectory() as folder:
        root = write(Path(folder), generated.files)

        project = load_project(root)
        prints = fingerprints(project)
        run_plan = plan_run(project, prints, EnvState(PROD), Store(project.target), RunOptions())
        the_plan, _ = planning.build(project, prints, EnvState(PROD), "dev")

    assert set(project.nodes) == set(generated.edges)
    layer_of = {n: i for i, layer in enumerate(project.graph.layers) for n in layer}
    for node_id, inputs in generated.edges.items():
        assert all(layer_of[ref] < layer_of[node_id] for ref in inputs), (node_id, inputs)
        if inputs:
            assert layer_of[node_id] == 1 + max(layer_of[ref] for ref in inputs)
    assert set(run_plan.to_run) == set(generated.edges) and not run_plan.cached
    assert {c.node for c in the_plan.changes} == set(generated.edges)
    assert all(c.category == "NEW" for c in the_plan.changes)


def outputs(root: Path, node_ids: list[str]) -> dict[str, list[tuple]]:
    con = duckdb.connect()
    result = {}
    for node_id in node_ids:
        kind, name = node_id.split(".")
        path = root / "target" / "cache" / kind / f"{name}.parquet"
        result[node_id] = con.execute(
            f"SELECT * FROM read_parquet('{path}') ORDER BY ALL"
        ).fetchall()
    return result


@pytest.mark.slow
@settings(max_examples=4, deadline=None, suppress_health_check=list(HealthCheck))
@given(projects())
def test_generated_project_runs_identically_in_sequence_and_in_parallel(
    generated: Generated,
) -> None:
    with tempfile.TemporaryDirectory() as folder:
        sequential = write(Path(folder) / "sequential", generated.files)
        parallel = write(Path(folder) / "parallel", generated.files)

        ran: list[subprocess.CompletedProcess] = [
            run_seeknal(sequential, "run"),
            run_seeknal(parallel, "run", "--parallel", "--max-workers", "3"),
        ]

        for result in ran:
            assert result.returncode == 0, result.stdout + result.stderr
        nodes = sorted(generated.edges)
        assert outputs(parallel, nodes) == outputs(sequential, nodes)


# --- damaged node files --------------------------------------------------------------------------

VALID_NODES = {
    "seeknal/sources/orders.yml": """\
kind: source
name: orders
description: "Orders: one row per order"
source: csv
table: data/orders.csv
params:
  delimiter: ","
  header: true
  null_values: ["", "NA"]
columns:
  order_id: {type: integer, description: Order id}
  customer_id: integer
  amount: double
  ordered_at: timestamp
""",
    "seeknal/transforms/enriched.yml": """\
kind: transform
name: enriched
tags: [orders, daily]
inputs:
  - ref: source.orders
transform: |
  SELECT order_id, customer_id, amount * 1.25 AS gross, ordered_at
  FROM source.orders
  WHERE amount > 0;
""",
    "seeknal/feature_groups/spend.yml": """\
kind: feature_group
name: spend
entity: {name: customer, join_keys: [customer_id]}
materialization:
  event_time_col: ordered_at
  offline: {enabled: true, format: parquet}
inputs: [{ref: transform.enriched}]
features:
  gross: {dtype: double, description: "Gross amount"}
""",
    "seeknal/exposures/training.yml": """\
kind: exposure
name: training
type: file
path: output/training.parquet
inputs:
  - ref: feature_group.spend
""",
    "seeknal/rules/positive.yml": """\
kind: rule
name: positive
inputs: [{ref: transform.enriched}]
rule:
  - {type: range, column: gross, params: {min: 0, severity: warn}}
  - type: null
    columns: [order_id]
    params: {max_null_percentage: 0}
""",
}
ORDERS_CSV = "order_id,customer_id,amount,ordered_at\n1,7,2.5,2024-01-01 10:00:00\n"
INSERTS = [
    b"\t",
    b":",
    b": ",
    b"\n",
    b"'",
    b'"',
    b"{",
    b"[",
    b"- ",
    b"#",
    b"&a",
    b"*a",
    b"!!",
    b"\x00",
]


@st.composite
def damaged(draw: st.DrawFn) -> tuple[str, bytes]:
    """One node file of the valid project, damaged in one to three ways."""
    relative = draw(st.sampled_from(sorted(VALID_NODES)))
    data = bytearray(VALID_NODES[relative].encode())
    for _ in range(draw(st.integers(1, 3))):
        where = draw(st.integers(0, len(data)))
        how = draw(st.sampled_from(["flip", "truncate", "insert", "delete", "duplicate"]))
        if how == "flip" and data:
            data[min(where, len(data) - 1)] ^= draw(st.integers(1, 255))
        elif how == "truncate":
            del data[where:]
        elif how == "insert":
            data[where:where] = draw(st.sampled_from(INSERTS))
        elif how == "delete":
            del data[where : where + draw(st.integers(1, 12))]
        elif how == "duplicate":
            lines = bytes(data).splitlines(keepends=True)
            if lines:
                line = draw(st.integers(0, len(lines) - 1))
                data = bytearray(b"".join(lines[: line + 1] + lines[line:]))
    return relative, bytes(data)


@pytest.fixture(scope="module")
def damage_project(tmp_path_factory) -> Path:
    return write(tmp_path_factory.mktemp("damaged"), {"data/orders.csv": ORDERS_CSV, **VALID_NODES})


def test_valid_node_files_load(damage_project) -> None:
    assert len(load_project(damage_project).nodes) == len(VALID_NODES)


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(damaged())
def test_damaged_node_file_raises_only_product_errors(damage_project, case) -> None:
    relative, data = case
    path = damage_project / relative
    try:
        path.write_bytes(data)
        try:
            load_project(damage_project)
        except SeeknalError as error:
            assert str(error).strip(), "an error without a message"
    finally:
        path.write_text(VALID_NODES[relative])


def test_damage_strategy_produces_invalid_files(damage_project) -> None:
    """Guards the test above against damage so mild that every file still loads."""
    chooser = random.Random(7)
    failures = 0
    for _ in range(40):
        relative = chooser.choice(sorted(VALID_NODES))
        text = VALID_NODES[relative]
        cut = chooser.randrange(len(text))
        path = damage_project / relative
        try:
            path.write_text(text[:cut] + "\t:" + text[cut:])
            load_project(damage_project)
        except SeeknalError:
            failures += 1
        finally:
            path.write_text(text)
    assert failures > 10
