"""Change categories (SPEC 5): a table of edits to one small project and the plan each gives.

Each case writes the base project, takes it as production's baseline (columns derived the way a
run records them), applies an edit in place and builds the plan with `plan.build`, the function
`seeknal plan` uses. Nothing runs; every case is pure and fast.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from seeknal_dagster import manifest, schemas
from seeknal_dagster import plan as planning
from seeknal_dagster.diff import (
    BREAKING,
    DEPENDENT,
    METADATA,
    NEW,
    NON_BREAKING,
    REMOVED,
    Change,
    categorise,
)
from seeknal_dagster.project import load_project
from seeknal_dagster.storage import EnvState, Pointer

Files = dict[str, str]
Edit = Callable[[Files], Files]
Expected = dict[str, tuple[str, tuple[str, ...]]]

ORDERS_CSV = "order_id,customer_id,amount,status,ordered_at\n" + "".join(
    f"{i},{i % 3 + 1},{i * 10.5},{'cancelled' if i % 4 == 0 else 'paid'},2024-01-0{i} 10:00:00\n"
    for i in range(1, 9)
)
CUSTOMERS_CSV = "customer_id,country,segment\n1,NO,retail\n2,SE,retail\n3,DK,b2b\n"

ORDERS = "seeknal/sources/orders.yml"
CUSTOMERS = "seeknal/sources/customers.yml"
ENRICHED = "seeknal/transforms/enriched.yml"
COUNTRY_STATS = "seeknal/transforms/country_stats.yml"
ALL_ORDERS = "seeknal/transforms/all_orders.yml"
ORDER_FEATURES = "seeknal/feature_groups/order_features.yml"
CUSTOMER_FEATURES = "seeknal/feature_groups/customer_features.yml"
TRAINING = "seeknal/exposures/training.yml"
RULE = "seeknal/rules/amount_present.yml"

BASE: Files = {
    "data/orders.csv": ORDERS_CSV,
    "data/customers.csv": CUSTOMERS_CSV,
    ORDERS: """\
kind: source
name: orders
description: Orders as exported from the shop
owner: data-team
tags: [raw]
source: csv
table: data/orders.csv
columns:
  order_id: integer
  customer_id: integer
  amount: {type: double, description: Order total}
  ordered_at: timestamp
""",
    CUSTOMERS: """\
kind: source
name: customers
source: csv
table: data/customers.csv
schema:
  - {name: customer_id, data_type: integer}
  - {name: country, data_type: string}
  - {name: segment, data_type: string}
""",
    ENRICHED: """\
kind: transform
name: enriched
description: Paid orders with the customer's country
inputs: [{ref: source.orders}, {ref: source.customers}]
transform: |
  SELECT o.order_id, o.customer_id, o.amount, o.status, o.ordered_at, c.country
  FROM source.orders o
  JOIN source.customers c USING (customer_id)
  WHERE o.status <> 'cancelled'
""",
    COUNTRY_STATS: """\
kind: transform
name: country_stats
inputs: [{ref: transform.enriched}]
transform: |
  SELECT country, count(*) AS n_orders, count(*) / 7.0 AS orders_per_day
  FROM transform.enriched
  GROUP BY 1
  ORDER BY 2 DESC
""",
    ALL_ORDERS: """\
kind: transform
name: all_orders
inputs: [{ref: source.orders}]
transform: SELECT * FROM source.orders ORDER BY 2
""",
    ORDER_FEATURES: """\
kind: feature_group
name: order_features
entity: {name: customer, join_keys: [customer_id]}
materialization:
  event_time_col: ordered_at
  offline: {enabled: true, format: parquet}
inputs: [{ref: transform.enriched}]
features:
  amount: {dtype: double, description: Order total}
  status: {dtype: string}
""",
    CUSTOMER_FEATURES: """\
kind: feature_group
name: customer_features
entity: customer
inputs: [{ref: source.customers}]
features:
  country: {dtype: string}
  segment: {dtype: string}
""",
    TRAINING: """\
kind: exposure
name: training
type: file
path: output/training.parquet
format: parquet
inputs:
  - ref: feature_group.order_features
  - ref: feature_group.customer_features
""",
    RULE: """\
kind: rule
name: amount_present
inputs: [{ref: transform.enriched}]
rule: {type: "null", columns: [amount], params: {max_null_percentage: 0}}
""",
}

# Every node downstream of each node of BASE, in the order plans list them.
DOWNSTREAM = {
    "source.orders": [
        "transform.all_orders",
        "transform.enriched",
        "feature_group.order_features",
        "rule.amount_present",
        "transform.country_stats",
        "exposure.training",
    ],
    "source.customers": [
        "feature_group.customer_features",
        "transform.enriched",
        "feature_group.order_features",
        "rule.amount_present",
        "transform.country_stats",
        "exposure.training",
    ],
    "transform.enriched": [
        "feature_group.order_features",
        "rule.amount_present",
        "transform.country_stats",
        "exposure.training",
    ],
    "feature_group.order_features": ["exposure.training"],
    "feature_group.customer_features": ["exposure.training"],
}

UNKNOWN_COLUMNS = "output columns could not be derived, so column changes are unknown"


@dataclass(frozen=True)
class Case:
    """An edit of BASE and the changes the plan must show (node -> category, reasons)."""

    name: str
    edit: Edit
    expected: Expected
    impact: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    relocate: bool = False  # write the edited project into another folder
    marks: tuple[Any, ...] = ()  # for the categories (a known bug elsewhere: xfail)
    invariant_marks: tuple[Any, ...] = ()  # for the to_execute invariant


# --- edits ------------------------------------------------------------------------------------


def replace(path: str, old: str, new: str) -> Edit:
    def edit(files: Files) -> Files:
        assert old in files[path], f"{old!r} is not in {path}"
        return {**files, path: files[path].replace(old, new)}

    return edit


def write(path: str, text: str) -> Edit:
    return lambda files: {**files, path: text}


def delete(*paths: str) -> Edit:
    return lambda files: {k: v for k, v in files.items() if k not in paths}


def move(old: str, new: str) -> Edit:
    def edit(files: Files) -> Files:
        moved = {k: v for k, v in files.items() if k != old}
        moved[new] = files[old]
        return moved

    return edit


def csv_column(path: str, transform: Callable[[list[str], int], list[str]]) -> Edit:
    """Rewrites every line of a CSV through `transform(fields, line_number)`."""

    def edit(files: Files) -> Files:
        lines = files[path].splitlines()
        rows = [",".join(transform(line.split(","), n)) for n, line in enumerate(lines)]
        return {**files, path: "\n".join(rows) + "\n"}

    return edit


def crlf(files: Files) -> Files:
    return {k: v.replace("\n", "\r\n") if k.endswith(".yml") else v for k, v in files.items()}


def orders_as_json(files: Files) -> Files:
    header, *rows = files["data/orders.csv"].splitlines()
    names = header.split(",")
    records = [dict(zip(names, row.split(","), strict=True)) for row in rows]
    text = "".join(json.dumps(r) + "\n" for r in records)
    return {**files, "data/orders.json": text}


def chain(*edits: Edit) -> Edit:
    def edit(files: Files) -> Files:
        for step in edits:
            files = step(files)
        return files

    return edit


# --- expected changes -------------------------------------------------------------------------


def change(node: str, category: str, *reasons: str) -> Expected:
    return {node: (category, reasons)}


def dependents(cause: str, breaking: bool = False, **notes: tuple[str, ...]) -> Expected:
    """Every node downstream of `cause` as DEPENDENT on it; `notes` (keyed by the node's name
    with `__` for the dot) add column facts after the upstream reason."""
    label = "upstream BREAKING change" if breaking else "upstream changed"
    result: Expected = {}
    for node in DOWNSTREAM[cause]:
        extra = notes.get(node.replace(".", "__"), ())
        result[node] = (DEPENDENT, (f"{label}: {cause}", *extra))
    return result


def unknown(*nodes: str) -> dict[str, tuple[str, ...]]:
    return {node.replace(".", "__"): (UNKNOWN_COLUMNS,) for node in nodes}


CASES = [
    # --- metadata only: nothing runs --------------------------------------------------------
    Case(
        "description_only",
        replace(ORDERS, "Orders as exported from the shop", "Orders, as the shop exports them"),
        change("source.orders", METADATA, "description changed"),
    ),
    Case(
        "owner_only",
        replace(ORDERS, "owner: data-team", "owner: ml-platform"),
        change("source.orders", METADATA, "owner changed"),
    ),
    Case(
        "tags_only",
        replace(ORDERS, "tags: [raw]", "tags: [raw, pii]"),
        change("source.orders", METADATA, "tags changed"),
    ),
    Case(
        "description_owner_and_tags",
        chain(
            replace(ORDERS, "Orders as exported from the shop", "Shop orders"),
            replace(ORDERS, "owner: data-team", "owner: ml-platform"),
            replace(ORDERS, "tags: [raw]", "tags: []"),
        ),
        change("source.orders", METADATA, "description changed", "owner changed", "tags changed"),
    ),
    Case(
        "source_column_description_only",
        replace(ORDERS, "description: Order total}", "description: Order total in EUR}"),
        change("source.orders", METADATA, "column descriptions changed"),
    ),
    Case(
        "feature_description_only",
        replace(ORDER_FEATURES, "description: Order total}", "description: Order total in EUR}"),
        change("feature_group.order_features", METADATA, "column descriptions changed"),
    ),
    Case(
        "sql_whitespace",
        replace(ENRICHED, "  FROM source.orders o\n", "  FROM   source.orders    o\n\n\n"),
        change("transform.enriched", METADATA, "SQL reformatted (same logic)"),
    ),
    Case(
        "sql_comments",
        replace(ENRICHED, "  WHERE", "  -- only orders that were paid\n  WHERE /* note */"),
        change("transform.enriched", METADATA, "SQL reformatted (same logic)"),
    ),
    Case(
        "sql_keyword_case",
        chain(
            replace(ENRICHED, "SELECT", "select"),
            replace(ENRICHED, "JOIN", "join"),
            replace(ENRICHED, "WHERE", "where"),
        ),
        change("transform.enriched", METADATA, "SQL reformatted (same logic)"),
    ),
    Case(
        "sql_ref_spelling_and_semicolon",
        chain(
            replace(ENRICHED, "FROM source.orders o", "FROM ref('source.orders') o"),
            replace(ENRICHED, "<> 'cancelled'\n", "<> 'cancelled';\n"),
        ),
        change("transform.enriched", METADATA, "SQL reformatted (same logic)"),
    ),
    Case("crlf_line_endings", crlf, {}),
    Case(
        "yaml_keys_reordered",
        write(
            ORDER_FEATURES,
            """\
features:
  amount: {description: Order total, dtype: double}
  status: {dtype: string}
inputs: [{ref: transform.enriched}]
materialization:
  offline: {format: parquet, enabled: true}
  event_time_col: ordered_at
entity: {join_keys: [customer_id], name: customer}
name: order_features
kind: feature_group
""",
        ),
        {},
    ),
    Case("node_file_moved", move(ENRICHED, "seeknal/elsewhere/deeper/enriched.yml"), {}),
    Case("project_moved", lambda files: files, {}, relocate=True),
    Case(
        "sql_inputs_listed_in_another_order",
        replace(
            ENRICHED,
            "[{ref: source.orders}, {ref: source.customers}]",
            "[{ref: source.customers}, {ref: source.orders}]",
        ),
        {},
    ),
    Case("declared_type_spelling", replace(ORDERS, "order_id: integer", "order_id: INTEGER"), {}),
    Case(
        "feature_dtype_spelling",
        replace(ORDER_FEATURES, "amount: {dtype: double,", "amount: {dtype: DOUBLE,"),
        {},
    ),
    # --- SQL output columns -----------------------------------------------------------------
    Case(
        "sql_column_added",
        replace(ENRICHED, "c.country\n", "c.country, c.segment\n"),
        {
            **change(
                "transform.enriched", NON_BREAKING, "SQL logic changed", "new column: segment"
            ),
            **dependents("transform.enriched"),
        },
    ),
    Case(
        "sql_column_removed",
        replace(ENRICHED, "o.status, ", ""),
        {
            **change("transform.enriched", BREAKING, "SQL logic changed", "removed column: status"),
            **dependents(
                "transform.enriched",
                breaking=True,
                **unknown("feature_group.order_features", "exposure.training"),
            ),
        },
        impact={
            "transform.enriched": (
                "feature_group.order_features reads transform.enriched.status, which was "
                "removed: it will fail",
                "rule.amount_present does not read the changed columns of transform.enriched",
                "transform.country_stats does not read the changed columns of transform.enriched",
            )
        },
    ),
    Case(
        "sql_column_renamed_by_alias",
        replace(ENRICHED, "c.country\n", "c.country AS country_code\n"),
        {
            **change(
                "transform.enriched",
                BREAKING,
                "SQL logic changed",
                "column renamed: country -> country_code",
            ),
            **dependents("transform.enriched", breaking=True, **unknown("transform.country_stats")),
        },
        impact={
            "transform.enriched": (
                "feature_group.order_features does not read the changed columns of "
                "transform.enriched",
                "rule.amount_present does not read the changed columns of transform.enriched",
                "transform.country_stats reads transform.enriched.country, which was removed: "
                "it will fail",
            )
        },
    ),
    Case(
        "sql_column_retyped_by_cast",
        replace(ENRICHED, "o.amount,", "CAST(o.amount AS VARCHAR) AS amount,"),
        {
            **change(
                "transform.enriched",
                BREAKING,
                "SQL logic changed",
                "column type changed: amount double -> varchar",
            ),
            **dependents("transform.enriched", breaking=True),
        },
        impact={
            "transform.enriched": (
                "feature_group.order_features reads transform.enriched.amount, whose type "
                "changed (double -> varchar): check it",
                "rule.amount_present reads transform.enriched.amount, whose type changed "
                "(double -> varchar): check it",
                "transform.country_stats does not read the changed columns of transform.enriched",
            )
        },
    ),
    Case(
        "sql_columns_reordered",
        replace(ENRICHED, "o.order_id, o.customer_id", "o.customer_id, o.order_id"),
        {
            **change(
                "transform.enriched", NON_BREAKING, "SQL logic changed", "column order changed"
            ),
            **dependents("transform.enriched"),
        },
    ),
    Case(
        "sql_column_inserted_before_order_by_position",
        replace(COUNTRY_STATS, "country, count(*)", "country, sum(amount) AS revenue, count(*)"),
        change("transform.country_stats", NON_BREAKING, "SQL logic changed", "new column: revenue"),
    ),
    Case(
        "sql_cast_to_the_type_duckdb_already_gives",
        replace(COUNTRY_STATS, "count(*) / 7.0 AS", "CAST(count(*) / 7.0 AS DOUBLE) AS"),
        change("transform.country_stats", NON_BREAKING, "SQL logic changed"),
    ),
    Case(
        "sql_where_changed",
        replace(ENRICHED, "<> 'cancelled'", "NOT IN ('cancelled', 'refunded')"),
        {
            **change("transform.enriched", NON_BREAKING, "SQL logic changed"),
            **dependents("transform.enriched"),
        },
    ),
    Case(
        "sql_string_literal_case",
        replace(ENRICHED, "'cancelled'", "'CANCELLED'"),
        {
            **change("transform.enriched", NON_BREAKING, "SQL logic changed"),
            **dependents("transform.enriched"),
        },
    ),
    Case(
        "sql_new_column_of_unknown_type",
        replace(ENRICHED, "c.country\n", "c.country, my_score(o.amount) AS score\n"),
        {
            **change(
                "transform.enriched",
                NON_BREAKING,
                "SQL logic changed",
                "new column: score (its type cannot be inferred)",
            ),
            **dependents("transform.enriched"),
        },
    ),
    Case(
        "sql_column_type_no_longer_inferable",
        replace(ENRICHED, "o.amount,", "my_round(o.amount) AS amount,"),
        {
            **change(
                "transform.enriched",
                NON_BREAKING,
                "SQL logic changed",
                "type of amount cannot be inferred any more (was double)",
            ),
            **dependents("transform.enriched"),
        },
    ),
    # --- SELECT * over an input whose columns change ----------------------------------------
    Case(
        "select_star_input_gained_column_before_order_by_position",
        chain(
            csv_column(
                "data/orders.csv",
                lambda fields, n: [*fields[:2], "channel" if n == 0 else "web", *fields[2:]],
            ),
            replace(
                ORDERS, "  customer_id: integer\n", "  customer_id: integer\n  channel: string\n"
            ),
        ),
        {
            **change("source.orders", NON_BREAKING, "new column: channel"),
            **dependents("source.orders", transform__all_orders=("new column: channel",)),
        },
    ),
    Case(
        "select_star_input_lost_column",
        csv_column("data/orders.csv", lambda fields, _: [*fields[:3], *fields[4:]]),
        {
            **change("source.orders", BREAKING, "removed column: status"),
            **dependents(
                "source.orders",
                breaking=True,
                transform__all_orders=("removed column: status",),
                **unknown(
                    "transform.enriched",
                    "feature_group.order_features",
                    "transform.country_stats",
                    "exposure.training",
                ),
            ),
        },
        impact={
            "source.orders": (
                "transform.all_orders passes source.orders.status through, which was removed: "
                "its output loses that column",
                "transform.enriched reads source.orders.status, which was removed: it will fail",
            )
        },
    ),
    # --- feature groups ---------------------------------------------------------------------
    Case(
        "feature_added",
        replace(
            ORDER_FEATURES,
            "  status: {dtype: string}\n",
            "  status: {dtype: string}\n  order_id: {dtype: integer}\n",
        ),
        {
            **change("feature_group.order_features", NON_BREAKING, "new feature: order_id"),
            **dependents(
                "feature_group.order_features", exposure__training=("new column: order_id",)
            ),
        },
    ),
    Case(
        "feature_added_that_another_training_input_also_has",
        replace(
            ORDER_FEATURES,
            "  status: {dtype: string}\n",
            "  status: {dtype: string}\n  country: {dtype: string}\n",
        ),
        {
            **change("feature_group.order_features", NON_BREAKING, "new feature: country"),
            **dependents(
                "feature_group.order_features",
                exposure__training=("new column: customer_features__country",),
            ),
        },
    ),
    Case(
        "feature_removed",
        replace(ORDER_FEATURES, "  status: {dtype: string}\n", ""),
        {
            **change("feature_group.order_features", BREAKING, "removed feature: status"),
            **dependents(
                "feature_group.order_features",
                breaking=True,
                exposure__training=("removed column: status",),
            ),
        },
        impact={
            "feature_group.order_features": (
                "exposure.training passes feature_group.order_features.status through, which was "
                "removed: its output loses that column",
            )
        },
    ),
    Case(
        "feature_dtype_changed",
        replace(ORDER_FEATURES, "amount: {dtype: double,", "amount: {dtype: float,"),
        {
            **change(
                "feature_group.order_features",
                BREAKING,
                "column type changed: amount double -> float",
            ),
            **dependents(
                "feature_group.order_features",
                breaking=True,
                exposure__training=("column type changed: amount double -> float",),
            ),
        },
        impact={
            "feature_group.order_features": (
                "exposure.training reads feature_group.order_features.amount, whose type changed "
                "(double -> float): check it",
            )
        },
    ),
    Case(
        "join_keys_changed",
        replace(ORDER_FEATURES, "join_keys: [customer_id]", "join_keys: [customer_id, order_id]"),
        {
            **change(
                "feature_group.order_features",
                BREAKING,
                "join keys changed: customer_id -> customer_id, order_id",
                "new column: order_id",
            ),
            **dependents(
                "feature_group.order_features",
                breaking=True,
                exposure__training=("new column: order_id",),
            ),
        },
    ),
    Case(
        "entity_changed",
        replace(ORDER_FEATURES, "{name: customer,", "{name: buyer,"),
        {
            **change("feature_group.order_features", BREAKING, "entity changed: customer -> buyer"),
            **dependents("feature_group.order_features", breaking=True),
        },
    ),
    Case(
        "materialization_changed",
        replace(
            ORDER_FEATURES,
            "event_time_col: ordered_at\n",
            "event_time_col: ordered_at\n  online: {enabled: true, ttl: 1d}\n",
        ),
        {
            **change(
                "feature_group.order_features", NON_BREAKING, "materialization changed (online)"
            ),
            **dependents("feature_group.order_features"),
        },
    ),
    # --- sources ----------------------------------------------------------------------------
    Case(
        "source_format_changed",
        chain(
            orders_as_json,
            replace(
                ORDERS,
                "source: csv\ntable: data/orders.csv",
                "source: jsonl\ntable: data/orders.json",
            ),
        ),
        {
            **change(
                "source.orders",
                BREAKING,
                "source format changed: csv -> jsonl",
                "source file path changed: data/orders.csv -> data/orders.json",
            ),
            **dependents("source.orders", breaking=True),
        },
    ),
    Case(
        "source_path_changed",
        chain(
            move("data/orders.csv", "data/orders_2024.csv"),
            replace(ORDERS, "table: data/orders.csv", "table: data/orders_2024.csv"),
        ),
        {
            **change(
                "source.orders",
                NON_BREAKING,
                "source file path changed: data/orders.csv -> data/orders_2024.csv",
            ),
            **dependents("source.orders"),
        },
    ),
    Case(
        "source_params_changed",
        replace(
            ORDERS,
            "table: data/orders.csv\n",
            "table: data/orders.csv\nparams: {delimiter: ',', null_values: ['']}\n",
        ),
        {
            **change("source.orders", NON_BREAKING, "params changed: delimiter, null_values"),
            **dependents("source.orders"),
        },
    ),
    Case(
        "source_data_changed_through_two_levels",
        replace("data/customers.csv", "3,DK", "3,FI"),
        {
            **change("source.customers", NON_BREAKING, "data file changed"),
            **dependents("source.customers"),
        },
    ),
    Case(
        "columns_entry_added_for_a_file_column",
        replace(ORDERS, "  ordered_at: timestamp\n", "  ordered_at: timestamp\n  status: string\n"),
        {
            **change("source.orders", NON_BREAKING, "column status is now declared as varchar"),
            **dependents("source.orders"),
        },
    ),
    Case(
        "columns_entry_removed_same_detected_type",
        replace(ORDERS, "  ordered_at: timestamp\n", ""),
        {
            **change(
                "source.orders",
                NON_BREAKING,
                "column ordered_at is no longer declared; the file still has it and its type "
                "is now detected",
            ),
            **dependents("source.orders"),
        },
    ),
    Case(
        "columns_entry_removed_other_detected_type",
        replace(ORDERS, "  order_id: integer\n", ""),
        {
            **change("source.orders", BREAKING, "column type changed: order_id integer -> bigint"),
            **dependents(
                "source.orders",
                breaking=True,
                transform__all_orders=("column type changed: order_id integer -> bigint",),
                transform__enriched=("column type changed: order_id integer -> bigint",),
            ),
        },
        impact={
            "source.orders": (
                "transform.all_orders reads source.orders.order_id, whose type changed "
                "(integer -> bigint): check it",
                "transform.enriched reads source.orders.order_id, whose type changed "
                "(integer -> bigint): check it",
            )
        },
    ),
    Case(
        "columns_entry_retyped",
        replace(ORDERS, "{type: double,", "{type: 'decimal(10,2)',"),
        {
            **change(
                "source.orders", BREAKING, "column type changed: amount double -> decimal(10,2)"
            ),
            **dependents(
                "source.orders",
                breaking=True,
                transform__all_orders=("column type changed: amount double -> decimal(10,2)",),
                transform__enriched=("column type changed: amount double -> decimal(10,2)",),
            ),
        },
        impact={
            "source.orders": (
                "transform.all_orders reads source.orders.amount, whose type changed "
                "(double -> decimal(10,2)): check it",
                "transform.enriched reads source.orders.amount, whose type changed "
                "(double -> decimal(10,2)): check it",
            )
        },
    ),
    Case(
        "schema_entry_added_with_its_file_column",
        chain(
            csv_column(
                "data/customers.csv",
                lambda fields, n: [*fields, "vip" if n == 0 else ("true" if n == 1 else "false")],
            ),
            replace(
                CUSTOMERS,
                "data_type: string}\n",
                "data_type: string}\n  - {name: vip, data_type: boolean}\n",
            ),
        ),
        {
            **change("source.customers", NON_BREAKING, "new column: vip"),
            **dependents("source.customers"),
        },
    ),
    Case(
        "schema_entry_removed_with_its_file_column",
        chain(
            csv_column("data/customers.csv", lambda fields, _: fields[:2]),
            replace(CUSTOMERS, "  - {name: segment, data_type: string}\n", ""),
        ),
        {
            **change("source.customers", BREAKING, "removed column: segment"),
            **dependents(
                "source.customers",
                breaking=True,
                **unknown("feature_group.customer_features", "exposure.training"),
            ),
        },
        impact={
            "source.customers": (
                "feature_group.customer_features reads source.customers.segment, which was "
                "removed: it will fail",
                "transform.enriched does not read the changed columns of source.customers",
            )
        },
    ),
    Case(
        "schema_entry_retyped",
        replace(
            CUSTOMERS,
            "{name: customer_id, data_type: integer}",
            "{name: customer_id, data_type: long}",
        ),
        {
            **change(
                "source.customers", BREAKING, "column type changed: customer_id integer -> bigint"
            ),
            **dependents(
                "source.customers",
                breaking=True,
                feature_group__customer_features=(
                    "column type changed: customer_id integer -> bigint",
                ),
            ),
        },
        impact={
            "source.customers": (
                "feature_group.customer_features reads source.customers.customer_id, whose type "
                "changed (integer -> bigint): check it",
                "transform.enriched reads source.customers.customer_id, whose type changed "
                "(integer -> bigint): check it",
            )
        },
    ),
    # --- inputs -----------------------------------------------------------------------------
    Case(
        "input_added",
        chain(
            replace(
                COUNTRY_STATS,
                "inputs: [{ref: transform.enriched}]",
                "inputs: [{ref: transform.enriched}, {ref: source.customers}]",
            ),
            replace(
                COUNTRY_STATS,
                "  GROUP BY 1",
                "  WHERE country IN (SELECT country FROM source.customers)\n  GROUP BY 1",
            ),
        ),
        change(
            "transform.country_stats",
            NON_BREAKING,
            "input added: source.customers",
            "SQL logic changed",
        ),
    ),
    Case(
        "input_removed",
        chain(
            replace(ENRICHED, ", {ref: source.customers}]", "]"),
            replace(ENRICHED, "  JOIN source.customers c USING (customer_id)\n", ""),
            replace(ENRICHED, "c.country", "'NO' AS country"),
        ),
        {
            **change(
                "transform.enriched",
                BREAKING,
                "input removed: source.customers",
                "SQL logic changed",
            ),
            **dependents("transform.enriched", breaking=True),
        },
    ),
    Case(
        "training_inputs_swapped",
        replace(
            TRAINING,
            "  - ref: feature_group.order_features\n  - ref: feature_group.customer_features\n",
            "  - ref: feature_group.customer_features\n  - ref: feature_group.order_features\n",
        ),
        change(
            "exposure.training",
            NON_BREAKING,
            "input order changed: feature_group.order_features, "
            "feature_group.customer_features -> feature_group.customer_features, "
            "feature_group.order_features (the first input is the base of the join)",
            "column order changed",
        ),
    ),
    # --- nodes added, removed, renamed ------------------------------------------------------
    Case(
        "node_added",
        write(
            "seeknal/transforms/big_orders.yml",
            "kind: transform\nname: big_orders\ninputs: [{ref: transform.enriched}]\n"
            "transform: SELECT * FROM transform.enriched WHERE amount > 50\n",
        ),
        change("transform.big_orders", NEW, "new node"),
    ),
    Case(
        "node_removed",
        delete(ALL_ORDERS),
        change("transform.all_orders", REMOVED, "node removed"),
    ),
    Case(
        "node_removed_and_its_consumer_changed",
        chain(
            delete(CUSTOMER_FEATURES),
            replace(TRAINING, "  - ref: feature_group.customer_features\n", ""),
        ),
        {
            **change(
                "exposure.training",
                BREAKING,
                "input removed: feature_group.customer_features",
                "removed column: country",
                "removed column: segment",
            ),
            **change("feature_group.customer_features", REMOVED, "node removed"),
        },
    ),
    Case(
        "node_renamed_with_its_file",
        chain(
            move(COUNTRY_STATS, "seeknal/transforms/stats_by_country.yml"),
            replace(
                "seeknal/transforms/stats_by_country.yml",
                "name: country_stats",
                "name: stats_by_country",
            ),
        ),
        {
            **change("transform.stats_by_country", NEW, "new node"),
            **change("transform.country_stats", REMOVED, "node removed"),
        },
    ),
    # --- several edits at once --------------------------------------------------------------
    Case(
        "several_edits_on_one_node",
        chain(
            replace(ENRICHED, "Paid orders", "Paid shop orders"),
            replace(ENRICHED, "o.status, ", ""),
            replace(ENRICHED, "c.country\n", "c.country, c.segment\n"),
            replace(ENRICHED, "o.amount,", "CAST(o.amount AS VARCHAR) AS amount,"),
        ),
        {
            **change(
                "transform.enriched",
                BREAKING,
                "description changed",
                "SQL logic changed",
                "removed column: status",
                "new column: segment",
                "column type changed: amount double -> varchar",
            ),
            **dependents(
                "transform.enriched",
                breaking=True,
                **unknown("feature_group.order_features", "exposure.training"),
            ),
        },
        impact={
            "transform.enriched": (
                "feature_group.order_features reads transform.enriched.status, which was "
                "removed: it will fail",
                "feature_group.order_features reads transform.enriched.amount, whose type "
                "changed (double -> varchar): check it",
                "rule.amount_present reads transform.enriched.amount, whose type changed "
                "(double -> varchar): check it",
                "transform.country_stats does not read the changed columns of transform.enriched",
            )
        },
    ),
    Case(
        "metadata_edit_below_a_change_still_runs",
        chain(
            replace(ENRICHED, "<> 'cancelled'", "<> 'void'"),
            replace(
                COUNTRY_STATS, "name: country_stats\n", "name: country_stats\nowner: analytics\n"
            ),
        ),
        {
            **change("transform.enriched", NON_BREAKING, "SQL logic changed"),
            **dependents("transform.enriched"),
            **change(
                "transform.country_stats",
                DEPENDENT,
                "owner changed",
                "upstream changed: transform.enriched",
            ),
        },
    ),
    Case(
        "breaking_and_non_breaking_causes_below_one_node",
        chain(
            replace(ORDER_FEATURES, "  status: {dtype: string}\n", ""),
            replace(
                CUSTOMER_FEATURES,
                "features:",
                "materialization:\n  online: {enabled: true}\nfeatures:",
            ),
        ),
        {
            **change("feature_group.order_features", BREAKING, "removed feature: status"),
            **change(
                "feature_group.customer_features",
                NON_BREAKING,
                "materialization changed (online)",
            ),
            **change(
                "exposure.training",
                DEPENDENT,
                "upstream BREAKING change: feature_group.order_features",
                "upstream changed: feature_group.customer_features",
                "removed column: status",
            ),
        },
        impact={
            "feature_group.order_features": (
                "exposure.training passes feature_group.order_features.status through, which was "
                "removed: its output loses that column",
            )
        },
    ),
    # --- rules and exposures ----------------------------------------------------------------
    Case(
        "rule_changed",
        replace(RULE, "max_null_percentage: 0", "max_null_percentage: 5"),
        change("rule.amount_present", NON_BREAKING, "rule changed"),
    ),
    Case(
        "rule_reads_a_removed_column",
        chain(
            replace(RULE, "columns: [amount]", "columns: [status]"),
            replace(ENRICHED, "o.status, ", ""),
        ),
        {
            **change("transform.enriched", BREAKING, "SQL logic changed", "removed column: status"),
            **dependents(
                "transform.enriched",
                breaking=True,
                **unknown("feature_group.order_features", "exposure.training"),
            ),
            **change(
                "rule.amount_present",
                NON_BREAKING,
                "rule changed",
            ),
        },
        impact={
            "transform.enriched": (
                "feature_group.order_features reads transform.enriched.status, which was "
                "removed: it will fail",
                "rule.amount_present reads transform.enriched.status, which was removed: it "
                "will fail",
                "transform.country_stats does not read the changed columns of transform.enriched",
            )
        },
    ),
    Case(
        "exposure_export_changed",
        replace(
            TRAINING,
            "path: output/training.parquet\nformat: parquet",
            "path: output/training.csv\nformat: csv",
        ),
        change(
            "exposure.training",
            NON_BREAKING,
            "export path changed: output/training.parquet -> output/training.csv",
            "export format changed: parquet -> csv",
        ),
    ),
]


# --- the harness ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """A case's plan with the fingerprints of both sides."""

    plan: planning.Plan
    baseline_prints: dict[str, str]
    current_prints: dict[str, str]
    rules: set[str]


def production_state(nodes: Mapping[str, Mapping[str, Any]]) -> EnvState:
    """A production pointer file that records `nodes` as built (what a run leaves behind)."""
    pointers = {
        node_id: Pointer(
            fingerprint=entry["fingerprint"],
            snapshot=f"snapshots/{node_id}.parquet",
            rows=0,
            bytes=0,
            checksum="",
            columns=tuple((str(n), str(t)) for n, t in entry["columns"] or []),
            built_at="2026-01-01T00:00:00Z",
            node=entry,
        )
        for node_id, entry in nodes.items()
    }
    return EnvState("prod", 1, "2026-01-01T00:00:00Z", pointers)


def baseline_nodes(root: Path) -> tuple[dict[str, Any], dict[str, str]]:
    """Production's manifest nodes for the project at `root`, as a run records them."""
    project = load_project(root)
    prints = manifest.fingerprints(project)
    derived = schemas.derive(project)
    return manifest.build_manifest(project, prints, derived.columns)["nodes"], prints


def sync(root: Path, old: Files, new: Files) -> None:
    """Makes the files under `root` go from `old` to `new` (edits in place, as a user would)."""
    for relative in old.keys() - new.keys():
        (root / relative).unlink()
    for relative, text in new.items():
        if old.get(relative) != text:
            path = root / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(text.encode())


def outcome(case: Case, make_project: Callable[..., Path]) -> Outcome:
    root = make_project(BASE)
    baseline, baseline_prints = baseline_nodes(root)
    edited = case.edit(dict(BASE))
    if case.relocate:
        root = make_project(edited)
    else:
        sync(root, BASE, edited)

    project = load_project(root)
    prints = manifest.fingerprints(project)
    plan, _ = planning.build(project, prints, production_state(baseline), "dev")
    rules = {n for n, spec in project.nodes.items() if spec.kind == "rule"}
    return Outcome(plan, baseline_prints, prints, rules)


def _params(cases: list[Case], invariant: bool = False) -> list[Any]:
    return [
        pytest.param(case, id=case.name, marks=case.invariant_marks if invariant else case.marks)
        for case in cases
    ]


def test_cases_are_many_and_named_once() -> None:
    names = [case.name for case in CASES]
    assert len(names) >= 40
    assert len(set(names)) == len(names)


@pytest.mark.parametrize("case", _params(CASES))
def test_categorise_case(case: Case, make_project: Callable[..., Path]) -> None:
    result = outcome(case, make_project)

    found = {c.node: (c.category, c.reasons) for c in result.plan.changes}
    impact = {c.node: c.impact for c in result.plan.changes if c.impact}
    assert found == case.expected
    assert impact == dict(case.impact)


@pytest.mark.parametrize("case", _params(CASES, invariant=True))
def test_plan_to_execute_is_exactly_the_changed_fingerprints(
    case: Case, make_project: Callable[..., Path]
) -> None:
    result = outcome(case, make_project)

    changed = {
        node_id
        for node_id, fingerprint in result.current_prints.items()
        if result.baseline_prints.get(node_id) != fingerprint and node_id not in result.rules
    }
    assert set(result.plan.to_execute) == changed
    assert len(result.plan.to_execute) == len(changed)
    if not changed and not result.plan.removed:
        ran = [c for c in result.plan.changes if c.node not in result.rules]
        assert all(c.category == METADATA for c in ran)


def test_plan_lists_changes_in_run_order_then_removed(make_project: Callable[..., Path]) -> None:
    case = next(c for c in CASES if c.name == "node_removed_and_its_consumer_changed")

    plan = outcome(case, make_project).plan

    assert [c.node for c in plan.changes] == [
        "exposure.training",
        "feature_group.customer_features",
    ]
    assert plan.removed == ["feature_group.customer_features"]
    assert plan.added == []
    assert plan.to_execute == ("exposure.training",)


def test_plan_baseline_manifest_reads_back_what_a_run_records(
    make_project: Callable[..., Path],
) -> None:
    nodes, _ = baseline_nodes(make_project(BASE))
    # NOTE: rules have no output, so no columns; a pointer file records [] for them.
    outputs = {n: entry for n, entry in nodes.items() if entry["kind"] != "rule"}

    assert planning.baseline_manifest(production_state(outputs)) == outputs


def test_categorise_identical_manifests_is_empty(make_project: Callable[..., Path]) -> None:
    nodes, _ = baseline_nodes(make_project(BASE))

    assert categorise(nodes, nodes) == []


def test_categorise_does_not_change_its_arguments(make_project: Callable[..., Path]) -> None:
    nodes, _ = baseline_nodes(make_project(BASE))
    current = json.loads(json.dumps(nodes))
    current["transform.enriched"]["columns"].pop()
    current["transform.enriched"]["definition"]["sql"] = "changed"
    before = (json.dumps(nodes, sort_keys=True), json.dumps(current, sort_keys=True))

    changes = categorise(nodes, current)

    assert changes[0] == Change(
        "transform.enriched",
        BREAKING,
        ("SQL logic changed", "removed column: country"),
        (
            "feature_group.order_features does not read the changed columns of transform.enriched",
            "rule.amount_present does not read the changed columns of transform.enriched",
            "transform.country_stats reads transform.enriched.country, which was removed: it "
            "will fail",
        ),
    )
    assert (json.dumps(nodes, sort_keys=True), json.dumps(current, sort_keys=True)) == before


def test_change_json_carries_impact_only_when_there_is_some() -> None:
    plain = Change("transform.x", NON_BREAKING, ("SQL logic changed",))
    breaking = Change("transform.x", BREAKING, ("removed column: a",), ("y reads x.a",))

    assert plain.to_json() == {
        "node": "transform.x",
        "category": "NON_BREAKING",
        "reasons": ["SQL logic changed"],
    }
    assert breaking.to_json()["impact"] == ["y reads x.a"]


def _transform(sql: str, columns: list[list[Any]]) -> dict[str, Any]:
    """A minimal manifest entry of a transform reading source.x."""
    return {
        "kind": "transform",
        "inputs": ["source.x"],
        "definition": {"sql": sql},
        "sql": sql,
        "columns": columns,
    }


def test_categorise_says_when_a_type_becomes_inferable() -> None:
    source = {"kind": "source", "inputs": [], "definition": {}, "columns": [["a", "DOUBLE"]]}
    old = _transform("SELECT my_fn(a) AS b FROM source.x", [["b", None]])
    new = _transform("SELECT CAST(my_fn(a) AS DOUBLE) AS b FROM source.x", [["b", "DOUBLE"]])

    changes = categorise({"source.x": source, "t.y": old}, {"source.x": source, "t.y": new})

    assert changes == [
        Change(
            "t.y",
            NON_BREAKING,
            ("SQL logic changed", "type of b was not inferred before (now double)"),
        )
    ]


def test_categorise_calls_a_column_swapped_in_place_a_rename_only_with_its_type() -> None:
    source = {
        "kind": "source",
        "inputs": [],
        "definition": {},
        "columns": [["a", "DOUBLE"], ["b", "VARCHAR"]],
    }
    old = _transform("SELECT a, b FROM source.x", [["a", "DOUBLE"], ["b", "VARCHAR"]])
    renamed = _transform("SELECT a AS c, b FROM source.x", [["c", "DOUBLE"], ["b", "VARCHAR"]])
    swapped = _transform("SELECT b AS c, b FROM source.x", [["c", "VARCHAR"], ["b", "VARCHAR"]])
    baseline = {"source.x": source, "t.y": old}

    assert categorise(baseline, {"source.x": source, "t.y": renamed})[0].reasons == (
        "SQL logic changed",
        "column renamed: a -> c",
    )
    assert categorise(baseline, {"source.x": source, "t.y": swapped})[0].reasons == (
        "SQL logic changed",
        "removed column: a",
        "new column: c",
    )


def test_categorise_impact_on_a_profile_of_selected_columns() -> None:
    source = {"kind": "source", "inputs": [], "definition": {}, "columns": [["a", "DOUBLE"]]}
    old = _transform("SELECT a, a * 2 AS b FROM source.x", [["a", "DOUBLE"], ["b", "DOUBLE"]])
    new = _transform("SELECT a FROM source.x", [["a", "DOUBLE"]])
    profile = {"kind": "profile", "inputs": ["t.y"], "definition": {"columns": ["b"]}}
    every = {"kind": "profile", "inputs": ["t.y"], "definition": {"columns": None}}

    changes = categorise(
        {"source.x": source, "t.y": old, "profile.b": profile, "profile.all": every},
        {"source.x": source, "t.y": new, "profile.b": profile, "profile.all": every},
    )

    assert changes[0].impact == (
        "profile.b reads t.y.b, which was removed: it will fail",
        "profile.all passes t.y.b through, which was removed: its output loses that column",
    )
