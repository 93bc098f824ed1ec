"""DuckDB execution of one node: inputs are parquet views, the output is written by DuckDB.

Each call gets its own connection. Inputs are registered as views named exactly as the SQL names
them (`source.transactions`), so data flows parquet -> DuckDB -> parquet with no Python copy.
Paths and names reach DuckDB only as quoted literals or identifiers, never as raw SQL text.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from seeknal_dagster import sql as sqlmod
from seeknal_dagster.errors import ExecutionError
from seeknal_dagster.specs import (
    ExposureSpec,
    FeatureGroupSpec,
    NodeSpec,
    RuleCheck,
    SourceSpec,
    TransformSpec,
)

if TYPE_CHECKING:
    import duckdb


@dataclass(frozen=True)
class NodeOutput:
    """What executing a node produced."""

    rows: int
    columns: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class CheckOutcome:
    """The result of one data-quality check."""

    passed: bool
    description: str
    failing_rows: int = 0
    metadata: Mapping[str, Any] | None = None


def literal(value: str) -> str:
    """A SQL string literal for `value` (single quotes doubled)."""
    return "'" + str(value).replace("'", "''") + "'"


def ident(name: str) -> str:
    """A quoted SQL identifier for `name`."""
    return '"' + str(name).replace('"', '""') + '"'


def connect(threads: int | None = None) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection set up for one step (no progress bar, bounded threads)."""
    import duckdb

    config: dict[str, Any] = {"threads": threads} if threads else {}
    return prepare(duckdb.connect(":memory:", config=config))


def prepare(con: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyConnection:
    """Step settings: no progress bar (it would write into the parent's terminal)."""
    con.execute("SET enable_progress_bar = false")
    return con


def register_inputs(con: duckdb.DuckDBPyConnection, inputs: Mapping[str, Path]) -> None:
    """Makes each input readable as `kind.name` (and via ref('kind.name') after rewriting)."""
    for node_id, path in inputs.items():
        kind, name = node_id.split(".", 1)
        con.execute(f"CREATE SCHEMA IF NOT EXISTS {ident(kind)}")
        con.execute(
            f"CREATE OR REPLACE VIEW {ident(kind)}.{ident(name)} AS "
            f"SELECT * FROM read_parquet({literal(str(path))})"
        )


def execute_node(
    con: duckdb.DuckDBPyConnection,
    spec: NodeSpec,
    inputs: Mapping[str, Path],
    input_specs: Mapping[str, NodeSpec],
    out_path: Path,
    data_path: Path | None = None,
) -> NodeOutput:
    """Runs one node and writes its output to `out_path` atomically.

    Args:
        con: the step's DuckDB connection.
        spec: the node to run.
        inputs: node id -> parquet file of each input's current output.
        input_specs: the specs of the inputs (feature groups' keys are needed for joins).
        out_path: the snapshot file to write.
        data_path: for a source, the absolute path of its data file.

    Raises:
        ExecutionError: the node failed; the message names it and carries DuckDB's error.
    """
    import duckdb

    try:
        prepare(con)
        register_inputs(con, inputs)
        base_sql = _base_query(con, spec, inputs, input_specs, data_path)
        columns = describe(con, base_sql)
        if isinstance(spec, FeatureGroupSpec):
            base_sql, columns = _feature_group_query(con, spec, base_sql, columns)
        rows = copy_to_parquet(con, base_sql, out_path)
    except duckdb.Error as error:
        raise ExecutionError(spec.id, _explain(spec, error, data_path)) from None
    return NodeOutput(rows, tuple(columns))


def describe(con: duckdb.DuckDBPyConnection, query: str) -> list[tuple[str, str]]:
    """The (name, type) columns of a query, without running it."""
    return [(row[0], row[1]) for row in con.execute(f"DESCRIBE {query}").fetchall()]


def copy_to_parquet(con: duckdb.DuckDBPyConnection, query: str, out_path: Path) -> int:
    """Writes the query's result with DuckDB's parquet writer; returns the row count."""
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(f".{out_path.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")
    try:
        result = con.execute(
            f"COPY ({query}) TO {literal(str(tmp))} (FORMAT parquet, COMPRESSION zstd)"
        ).fetchone()
        os.replace(tmp, out_path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    return int(result[0]) if result else 0


def export(con: duckdb.DuckDBPyConnection, snapshot: Path, fmt: str, destination: Path) -> None:
    """Writes an exposure's file from its snapshot, atomically (temp file, then rename)."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    tmp = destination.with_name(f".{destination.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")
    try:
        if fmt == "parquet":
            shutil.copyfile(snapshot, tmp)
        else:
            options = "FORMAT csv, HEADER" if fmt == "csv" else "FORMAT json, ARRAY true"
            con.execute(
                f"COPY (SELECT * FROM read_parquet({literal(str(snapshot))})) "
                f"TO {literal(str(tmp))} ({options})"
            )
        os.replace(tmp, destination)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def _base_query(
    con: duckdb.DuckDBPyConnection,
    spec: NodeSpec,
    inputs: Mapping[str, Path],
    input_specs: Mapping[str, NodeSpec],
    data_path: Path | None,
) -> str:
    if isinstance(spec, SourceSpec):
        assert data_path is not None
        return _source_query(con, spec, data_path)
    query = spec.sql
    if query:
        statements = sqlmod.split_statements(sqlmod.to_duckdb(query))
        for statement in statements[:-1]:
            con.execute(statement)
        return statements[-1]
    if isinstance(spec, TransformSpec):
        raise ExecutionError(spec.id, "a transform needs SQL")
    refs = list(spec.inputs)
    if len(refs) == 1:
        return f"SELECT * FROM {_view(refs[0])}"
    if isinstance(spec, ExposureSpec):
        return _training_join(con, spec, refs, input_specs)
    assert isinstance(spec, FeatureGroupSpec)
    return _key_join(con, spec, refs)


def source_columns(spec: SourceSpec, path: Path) -> list[tuple[str, str]]:
    """The columns (name, DuckDB type) a source yields, read from the file's header or schema."""
    import duckdb

    con = connect(threads=1)
    try:
        return describe(con, _source_query(con, spec, path, check_values=False))
    except duckdb.Error as error:
        raise ExecutionError(spec.id, _explain(spec, error, path)) from None
    finally:
        con.close()


def _view(node_id: str) -> str:
    kind, name = node_id.split(".", 1)
    return f"{ident(kind)}.{ident(name)}"


def _source_query(
    con: duckdb.DuckDBPyConnection, spec: SourceSpec, path: Path, check_values: bool = True
) -> str:
    declared = {c.name: c.type for c in spec.columns if c.type}
    if spec.format == "csv":
        options = spec.options
        args = [literal(str(path)), f"header = {str(options.header).lower()}"]
        for key, value in (
            ("delim", options.delimiter),
            ("quote", options.quote),
            ("escape", options.escape),
            ("timestampformat", options.timestamp_format),
            ("dateformat", options.date_format),
        ):
            if value is not None:
                args.append(f"{key} = {literal(value)}")
        if options.skip:
            args.append(f"skip = {int(options.skip)}")
        if options.null_values:
            args.append("nullstr = [" + ", ".join(literal(v) for v in options.null_values) + "]")
        present = [c for c, _ in describe(con, f"SELECT * FROM read_csv({', '.join(args)})")]
        _check_declared(spec, declared, present)
        if declared:
            types = ", ".join(f"{literal(c)}: {literal(t)}" for c, t in declared.items())
            args.append(f"column_types = {{{types}}}")
        return f"SELECT * FROM read_csv({', '.join(args)})"

    reader = {
        "parquet": f"read_parquet({literal(str(path))})",
        "json": f"read_json({literal(str(path))}, format = 'auto')",
        "jsonl": f"read_json({literal(str(path))}, format = 'newline_delimited')",
    }[spec.format]
    present = [c for c, _ in describe(con, f"SELECT * FROM {reader}")]
    _check_declared(spec, declared, present)
    if not declared:
        return f"SELECT * FROM {reader}"
    if check_values:
        _check_casts(con, spec, reader, declared)
    replaced = ", ".join(f"CAST({ident(c)} AS {t}) AS {ident(c)}" for c, t in declared.items())
    return f"SELECT * REPLACE ({replaced}) FROM {reader}"


def _check_declared(spec: SourceSpec, declared: Mapping[str, str], present: Sequence[str]) -> None:
    missing = [c for c in declared if c not in present]
    if missing:
        raise ExecutionError(
            spec.id,
            f"{spec.file} [columns]: declared column(s) {', '.join(missing)} not found in "
            f"{spec.path}; the file has: {', '.join(present)}. Fix: correct the column names "
            "under `columns:` or the file's header",
        )


def _check_casts(
    con: duckdb.DuckDBPyConnection, spec: SourceSpec, reader: str, declared: Mapping[str, str]
) -> None:
    """Finds the first value that does not convert to its declared type, if any."""
    for column, type_name in declared.items():
        row = con.execute(
            f"SELECT rn, CAST(v AS VARCHAR) FROM (SELECT row_number() OVER () AS rn, "
            f"{ident(column)} AS v FROM {reader}) WHERE v IS NOT NULL AND "
            f"TRY_CAST(v AS {type_name}) IS NULL LIMIT 1"
        ).fetchone()
        if row:
            raise ExecutionError(
                spec.id,
                f"{spec.file} [columns.{column}]: value {row[1]!r} in row {row[0]} of "
                f"{spec.path} is not a {type_name}. Fix: correct the data or declare the column "
                "with a type that fits",
            )


def _key_join(con: duckdb.DuckDBPyConnection, spec: FeatureGroupSpec, refs: list[str]) -> str:
    """Several inputs and no SQL: join them on the entity's join keys."""
    keys = list(spec.join_keys)
    seen: set[str] = set()
    select: list[str] = []
    joins: list[str] = []
    for index, ref in enumerate(refs):
        alias = f"i{index}"
        columns = [c for c, _ in describe(con, f"SELECT * FROM {_view(ref)}")]
        lacking = [k for k in keys if k not in columns]
        if lacking:
            raise ExecutionError(
                spec.id,
                f"{spec.file} [inputs]: input {ref} lacks join key(s) {', '.join(lacking)}. "
                "Fix: add a `transform:` that selects and joins the inputs yourself",
            )
        for column in columns:
            if column not in seen:
                seen.add(column)
                select.append(f"{alias}.{ident(column)}")
        if index == 0:
            joins.append(f"FROM {_view(ref)} {alias}")
        else:
            condition = " AND ".join(f"i0.{ident(k)} = {alias}.{ident(k)}" for k in keys)
            joins.append(f"LEFT JOIN {_view(ref)} {alias} ON {condition}")
    return f"SELECT {', '.join(select)} {' '.join(joins)}"


def _training_join(
    con: duckdb.DuckDBPyConnection,
    spec: ExposureSpec,
    refs: list[str],
    input_specs: Mapping[str, NodeSpec],
) -> str:
    """Builds training data: the first input is the base; each further feature group is
    left-joined on its join keys, as of the base row's event time when both sides have one."""
    base_ref = refs[0]
    base_spec = input_specs.get(base_ref)
    base_time = base_spec.event_time_col if isinstance(base_spec, FeatureGroupSpec) else None
    base_columns = [c for c, _ in describe(con, f"SELECT * FROM {_view(base_ref)}")]
    taken = set(base_columns)
    select = [f"b.{ident(c)}" for c in base_columns]
    joins = [f"FROM {_view(base_ref)} b"]
    for index, ref in enumerate(refs[1:], start=1):
        other = input_specs.get(ref)
        alias = f"f{index}"
        columns = [c for c, _ in describe(con, f"SELECT * FROM {_view(ref)}")]
        if not isinstance(other, FeatureGroupSpec):
            raise ExecutionError(
                spec.id,
                f"{spec.file} [inputs]: {ref} is not a feature group, so there is no key to join "
                "it on. Fix: add a `transform:` with the join you want",
            )
        keys = list(other.join_keys)
        lacking = [k for k in keys if k not in base_columns]
        if lacking:
            raise ExecutionError(
                spec.id,
                f"{spec.file} [inputs]: the base input {base_ref} lacks {ref}'s join key(s) "
                f"{', '.join(lacking)}. Fix: add a `transform:` with the join you want",
            )
        condition = [f"b.{ident(k)} = {alias}.{ident(k)}" for k in keys]
        skip = set(keys)
        if base_time and other.event_time_col:
            condition.append(f"b.{ident(base_time)} >= {alias}.{ident(other.event_time_col)}")
            skip.add(other.event_time_col)
            joins.append(f"ASOF LEFT JOIN {_view(ref)} {alias} ON {' AND '.join(condition)}")
        else:
            joins.append(f"LEFT JOIN {_view(ref)} {alias} ON {' AND '.join(condition)}")
        for column in columns:
            if column in skip:
                continue
            name = column if column not in taken else f"{other.name}__{column}"
            taken.add(name)
            select.append(f"{alias}.{ident(column)} AS {ident(name)}")
    return f"SELECT {', '.join(select)} {' '.join(joins)}"


def _feature_group_query(
    con: duckdb.DuckDBPyConnection,
    spec: FeatureGroupSpec,
    base_sql: str,
    columns: list[tuple[str, str]],
) -> tuple[str, list[tuple[str, str]]]:
    """Join keys + event time + declared features, cast to their dtypes."""
    available = [c for c, _ in columns]
    wanted = list(spec.join_keys)
    if spec.event_time_col:
        wanted.append(spec.event_time_col)
    features = spec.features if spec.features is not None else ()
    if spec.features is None:
        wanted += [c for c in available if c not in wanted]
    else:
        wanted += [f.name for f in features if f.name not in wanted]
    missing = [c for c in wanted if c not in available]
    if missing:
        raise ExecutionError(
            spec.id,
            f"{spec.file} [features]: column(s) {', '.join(missing)} not in the input; available: "
            f"{', '.join(available)}. Fix: compute them in `transform:` or remove them",
        )
    types = {f.name: f.type for f in features if f.type}
    select = [
        f"CAST({ident(c)} AS {types[c]}) AS {ident(c)}" if c in types else ident(c) for c in wanted
    ]
    query = f"SELECT {', '.join(select)} FROM ({base_sql}) AS fg_input"
    return query, describe(con, query)


def run_check(
    con: duckdb.DuckDBPyConnection, check: RuleCheck, target_id: str, snapshot: Path
) -> CheckOutcome:
    """Evaluates one rule check against the checked node's output."""
    prepare(con)
    register_inputs(con, {target_id: snapshot})
    table = _view(target_id)
    total = con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    if check.type == "null":
        worst: tuple[str, float] = ("", 0.0)
        for column in check.columns:
            nulls = con.execute(
                f"SELECT count(*) FILTER (WHERE {ident(column)} IS NULL) FROM {table}"
            ).fetchone()[0]
            percent = 100.0 * nulls / total if total else 0.0
            if percent >= worst[1]:
                worst = (column, percent)
        passed = worst[1] <= check.max_null_percentage
        return CheckOutcome(
            passed,
            f"{worst[0]} is {worst[1]:.2f}% null (allowed {check.max_null_percentage:g}%)",
            metadata={"null_percent": worst[1]},
        )
    if check.type == "range":
        bounds = []
        if check.min is not None:
            bounds.append(f"{ident(check.columns[0])} < {float(check.min)!r}")
        if check.max is not None:
            bounds.append(f"{ident(check.columns[0])} > {float(check.max)!r}")
        bad = con.execute(f"SELECT count(*) FROM {table} WHERE {' OR '.join(bounds)}").fetchone()[0]
        return CheckOutcome(
            bad == 0, f"{bad} row(s) of {check.columns[0]} outside [{check.min}, {check.max}]", bad
        )
    if check.type == "uniqueness":
        cols = ", ".join(ident(c) for c in check.columns)
        bad = con.execute(
            f"SELECT coalesce(sum(n - 1), 0) FROM (SELECT count(*) AS n FROM {table} "
            f"GROUP BY {cols} HAVING count(*) > 1)"
        ).fetchone()[0]
        return CheckOutcome(
            bad == 0, f"{bad} duplicate row(s) on ({', '.join(check.columns)})", int(bad)
        )
    if check.type == "accepted_values":
        column = ident(check.columns[0])
        bad = con.execute(
            f"SELECT count(*) FROM {table} WHERE {column} IS NOT NULL AND "
            f"CAST({column} AS VARCHAR) NOT IN (SELECT unnest(?::VARCHAR[]))",
            [[str(v) for v in check.values]],
        ).fetchone()[0]
        return CheckOutcome(
            bad == 0, f"{bad} row(s) of {check.columns[0]} not in the accepted values", bad
        )
    if check.type == "sql_assertion":
        query = sqlmod.split_statements(sqlmod.to_duckdb(check.sql or ""))[-1]
        bad = con.execute(f"SELECT count(*) FROM ({query})").fetchone()[0]
        return CheckOutcome(bad == 0, f"the assertion returned {bad} offending row(s)", bad)
    if check.type == "freshness":
        column = ident(check.columns[0])
        fresh, newest = con.execute(
            f"SELECT max({column}) >= now()::TIMESTAMP - CAST(? AS INTERVAL), max({column}) "
            f"FROM {table}",
            [check.max_age],
        ).fetchone()
        return CheckOutcome(
            bool(fresh), f"newest {check.columns[0]} is {newest} (max age {check.max_age})"
        )
    raise ExecutionError(target_id, f"not supported yet: rule type {check.type}")


_CSV_LINE = re.compile(r"Line: (\d+)")
_CSV_COLUMN = re.compile(r'converting column "([^"]+)"')
_CSV_VALUE = re.compile(r'Could not convert string "([^"]*)" to \'([^\']+)\'')


def _explain(spec: NodeSpec, error: Exception, data_path: Path | None) -> str:
    """DuckDB's error, led by the node file and, for data errors, column, row and value."""
    text = str(error).strip()
    if isinstance(spec, SourceSpec):
        line, column, value = (p.search(text) for p in (_CSV_LINE, _CSV_COLUMN, _CSV_VALUE))
        if line and column and value:
            return (
                f"{spec.file} [columns.{column.group(1)}]: value {value.group(1)!r} on line "
                f"{line.group(1)} of {spec.path} is not a {value.group(2)}. Fix: correct the "
                "data or declare the column with a type that fits"
            )
        first = text.splitlines()[0] if text else type(error).__name__
        return f"{spec.file}: cannot read {spec.path}: {first}"
    key = "transform" if spec.sql else "inputs"
    return f"{spec.file} [{key}]: DuckDB error: {text}"
