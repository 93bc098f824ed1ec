"""DuckDB execution of one node: inputs are parquet views, the output is written by DuckDB.

Each call gets its own connection. Inputs are registered as views named exactly as the SQL names
them (`source.transactions`), so data flows parquet -> DuckDB -> parquet with no Python copy.
Paths and names reach DuckDB only as quoted literals or identifiers, never as raw SQL text.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from seeknal_dagster import sql as sqlmod
from seeknal_dagster.errors import ExecutionError
from seeknal_dagster.specs import (
    ExposureSpec,
    FeatureGroupSpec,
    NodeSpec,
    ProfileSpec,
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


MEMORY_LIMIT_VARIABLE = "SEEKNAL_MEMORY_LIMIT"
SPILL_VARIABLE = "SEEKNAL_SPILL_DIR"
DEFAULT_MEMORY_LIMIT = "1536MB"


def prepare(con: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyConnection:
    """Step settings: no progress bar (it would write into the parent's terminal), and a memory
    limit with a spill folder so DuckDB streams big tables through disk instead of taking 80%
    of the machine ($SEEKNAL_MEMORY_LIMIT per step, default 1536MB; set by the runner from the
    number of concurrent steps)."""
    con.execute("SET enable_progress_bar = false")
    limit = os.environ.get(MEMORY_LIMIT_VARIABLE, DEFAULT_MEMORY_LIMIT)
    con.execute(f"SET memory_limit = {literal(limit)}")
    spill = os.environ.get(SPILL_VARIABLE)
    current = con.execute("SELECT current_setting('temp_directory')").fetchone()[0]
    # NOTE: DuckDB refuses to move a temp directory it has used; a reused connection keeps it.
    if spill and current != spill:
        import duckdb

        with contextlib.suppress(duckdb.NotImplementedException):
            con.execute(f"SET temp_directory = {literal(spill)}")
    return con


def register_inputs(con: duckdb.DuckDBPyConnection, inputs: Mapping[str, Path]) -> None:
    """Makes each input readable as `kind.name` (and via ref('kind.name') after rewriting)."""
    for node_id, path in inputs.items():
        kind, name = node_id.split(".", 1)
        con.execute(f"CREATE SCHEMA IF NOT EXISTS {ident(kind)}")
        con.execute(
            f"CREATE OR REPLACE VIEW {ident(kind)}.{ident(name)} AS "
            f"SELECT * FROM read_parquet({file_literal(path)})"
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

    if isinstance(spec, ProfileSpec):
        return execute_profile(con, spec, inputs, out_path)
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


def export(
    con: duckdb.DuckDBPyConnection | None, snapshot: Path, fmt: str, destination: Path
) -> None:
    """Writes an exposure's file from its snapshot, atomically (temp file, then rename).

    A parquet export is a file copy and needs no connection (`con` may be None)."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    tmp = destination.with_name(f".{destination.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")
    try:
        if fmt == "parquet":
            shutil.copyfile(snapshot, tmp)
        else:
            options = "FORMAT csv, HEADER" if fmt == "csv" else "FORMAT json, ARRAY true"
            assert con is not None, "a csv or json export needs a DuckDB connection"
            con.execute(
                f"COPY (SELECT * FROM read_parquet({file_literal(snapshot)})) "
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


# ---------------------------------------------------------------------------------------------
# Sources: reading a data file with every reader decision made explicit
# ---------------------------------------------------------------------------------------------

_INTEGER_TYPES = frozenset(
    f"{sign}{size}"
    for sign in ("", "U")
    for size in ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT")
)
_GLOB_CHARACTERS = re.compile(r"([*?\[])")
# What a header that reads as one column is most likely separated by instead of commas.
_OTHER_DELIMITERS = (";", "\t", "|")
_FRACTION_MARK = "seeknal: not a whole number"


def file_literal(path: Path | str) -> str:
    """A SQL literal that makes DuckDB's readers open exactly `path`.

    DuckDB reads every path as a glob pattern, so `a[1].csv` would open `a1.csv` and `b*.csv`
    every file starting with `b`; each of `*`, `?` and `[` is bracketed to stand for itself.
    """
    return literal(_GLOB_CHARACTERS.sub(r"[\1]", str(path)))


def _source_query(
    con: duckdb.DuckDBPyConnection, spec: SourceSpec, path: Path, check_values: bool = True
) -> str:
    """The query that loads a source with its declared (or detected) types enforced.

    CSV and JSON readers convert while reading, so they report the line of a bad value. Integer
    columns are read as text and converted by the query instead, because DuckDB's own
    conversion rounds `1.5` to `2` where it should fail.
    """
    _check_not_empty(spec, path)
    declared = {c.name: c.type for c in spec.columns if c.type}
    if spec.format == "parquet":
        return _parquet_query(con, spec, path, declared, check_values)

    columns = _sniff(con, spec, path)
    _check_declared(spec, declared, [name for name, _ in columns])
    types = {name: declared.get(name, type_name) for name, type_name in columns}
    guarded = [name for name, type_name in types.items() if type_name in _INTEGER_TYPES]
    if not declared and not guarded:
        return f"SELECT * FROM {_reader(spec, path, columns)}"

    read_as = {name: "VARCHAR" if name in guarded else t for name, t in types.items()}
    reader = _reader(spec, path, columns, read_as)
    if not guarded:
        return f"SELECT * FROM {reader}"
    replaced = ", ".join(f"{_whole_number_cast(c, types[c])} AS {ident(c)}" for c in guarded)
    return f"SELECT * REPLACE ({replaced}) FROM {reader}"


def _parquet_query(
    con: duckdb.DuckDBPyConnection,
    spec: SourceSpec,
    path: Path,
    declared: Mapping[str, str],
    check_values: bool,
) -> str:
    reader = f"read_parquet({file_literal(path)})"
    present = [c for c, _ in describe(con, f"SELECT * FROM {reader}")]
    _check_declared(spec, declared, present)
    if not declared:
        return f"SELECT * FROM {reader}"
    if check_values:
        _check_casts(con, spec, reader, declared)
    replaced = ", ".join(f"CAST({ident(c)} AS {t}) AS {ident(c)}" for c, t in declared.items())
    return f"SELECT * REPLACE ({replaced}) FROM {reader}"


def _check_not_empty(spec: SourceSpec, path: Path) -> None:
    """A 0-byte (or, for CSV, blank) file has no columns to read: say so instead of guessing."""
    try:
        size = path.stat().st_size
        head = path.read_bytes() if spec.format == "csv" and size < 4096 else b"data"
    except OSError as error:
        raise ExecutionError(
            spec.id,
            f"{spec.file} [table]: cannot read {spec.path}: {error.strerror}. Fix: check that "
            "the file exists and is readable",
        ) from None
    if size == 0 or not head.removeprefix(b"\xef\xbb\xbf").strip():
        found = "is empty (0 bytes)" if size == 0 else "has only blank lines"
        needs = (
            "at least its header line to it (a header line alone loads as zero rows)"
            if spec.format == "csv"
            else "its data to it"
        )
        raise ExecutionError(
            spec.id,
            f"{spec.file} [table]: data file {spec.path} {found}. Fix: write {needs}, or "
            "correct `table:`",
        )


def _sniff(con: duckdb.DuckDBPyConnection, spec: SourceSpec, path: Path) -> list[tuple[str, str]]:
    """The (name, type) columns of a CSV or JSON file as its reader detects them.

    With `header: false` the declared columns name the file's columns, in order.
    """
    columns = describe(con, f"SELECT * FROM {_reader(spec, path)}")
    options = spec.options
    if spec.format != "csv":
        return columns
    if not options.header and spec.columns and len(spec.columns) != len(columns):
        raise ExecutionError(
            spec.id,
            f"{spec.file} [columns]: {spec.path} has {len(columns)} column(s) but `columns:` "
            f"lists {len(spec.columns)}; with `header: false` the declared columns name the "
            "file's columns in order. Fix: list every column of the file, in order",
        )
    if options.delimiter is None and options.header and len(columns) == 1:
        other = next((d for d in _OTHER_DELIMITERS if d in columns[0][0]), None)
        if other is not None:
            written = json.dumps(other)
            raise ExecutionError(
                spec.id,
                f"{spec.file} [params.delimiter]: {spec.path} reads as one column named "
                f"{columns[0][0]!r}, which looks separated by {written}, not commas. Fix: set "
                f'`delimiter: {written}` under `params:` (or `delimiter: ","` if one column '
                "is right)",
            )
    return columns


def _reader(
    spec: SourceSpec,
    path: Path,
    columns: Sequence[tuple[str, str]] = (),
    types: Mapping[str, str] | None = None,
) -> str:
    """The table function that reads the source, `types` overriding the detected types.

    Every CSV dialect choice is explicit (defaults: comma, double quote, header line, no
    comment character, no skipped lines), so DuckDB guesses only column types.
    """
    if spec.format in ("json", "jsonl"):
        fmt = "auto" if spec.format == "json" else "newline_delimited"
        args = [file_literal(path), f"format = {literal(fmt)}"]
        if types:
            args.append(f"columns = {_struct(types)}")
        else:
            # NOTE: the whole file is sampled: a key or a type first seen late is still found.
            args.append("sample_size = -1")
        return f"read_json({', '.join(args)})"

    options = spec.options
    quote = options.quote if options.quote is not None else '"'
    args = [
        file_literal(path),
        f"header = {str(options.header).lower()}",
        f"delim = {literal(options.delimiter if options.delimiter is not None else ',')}",
        f"quote = {literal(quote)}",
        f"escape = {literal(options.escape if options.escape is not None else quote)}",
        # NOTE: left to DuckDB, a comment character or leading lines to skip may be guessed,
        # and the lines they match dropped without a word.
        "comment = ''",
        f"skip = {int(options.skip)}",
    ]
    for key, value in (
        ("timestampformat", options.timestamp_format),
        ("dateformat", options.date_format),
    ):
        if value is not None:
            args.append(f"{key} = {literal(value)}")
    if options.null_values:
        args.append("nullstr = [" + ", ".join(literal(v) for v in options.null_values) + "]")
    if not options.header and spec.columns:
        args.append("names = [" + ", ".join(literal(c.name) for c in spec.columns) + "]")
    detected = dict(columns)
    # Only the types that differ from the detected ones, so detected date formats still apply.
    overrides = {c: t for c, t in (types or {}).items() if t != detected.get(c)}
    if overrides:
        args.append(f"column_types = {_struct(overrides)}")
    return f"read_csv({', '.join(args)})"


def _struct(types: Mapping[str, str]) -> str:
    return "{" + ", ".join(f"{literal(c)}: {literal(t)}" for c, t in types.items()) + "}"


def _whole_number_cast(column: str, type_name: str) -> str:
    """Text to integer that fails on a fractional value instead of rounding it."""
    value = ident(column)
    message = literal(f"{_FRACTION_MARK} in column {column}: ")
    return (
        f"CASE WHEN {_has_fraction(value)} THEN error({message} || {value}) "
        f"ELSE CAST({value} AS {type_name}) END"
    )


def _has_fraction(value: str) -> str:
    """SQL, true when `value` is a number with a fractional part (which integers would round)."""
    text = f"CAST({value} AS VARCHAR)"

    number = f"TRY_CAST({text} AS DOUBLE)"
    has_point = f"(contains({text}, '.') OR contains(lower({text}), 'e'))"
    return f"({has_point} AND {number} <> trunc({number}))"


def _does_not_fit(value: str, type_name: str) -> str:
    """SQL, true when `value` is present but has no faithful `type_name` form."""
    lost = f"TRY_CAST({value} AS {type_name}) IS NULL"
    if type_name in _INTEGER_TYPES:
        lost = f"({lost} OR {_has_fraction(value)})"
    return f"({value} IS NOT NULL AND {lost})"


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
    """Fails on the first value that does not convert to its declared type, if any."""
    condition = " OR ".join(_does_not_fit(ident(c), t) for c, t in declared.items())
    if con.execute(f"SELECT 1 FROM {reader} WHERE {condition} LIMIT 1").fetchone() is None:
        return
    message = _bad_value_message(spec, reader, declared, declared) or (
        f"{spec.file} [columns]: a value of {spec.path} does not convert to its declared type. "
        "Fix: correct the data or declare the columns with types that fit"
    )
    raise ExecutionError(spec.id, message)


def _bad_value_message(
    spec: SourceSpec, reader: str, checks: Mapping[str, str], declared: Mapping[str, str]
) -> str | None:
    """Names the first value in `reader` that has no faithful form of its type in `checks`.

    Runs on its own single-threaded connection, so that row numbers follow the file.
    """
    flagged = ", ".join(
        f"CASE WHEN {_does_not_fit(ident(c), t)} THEN CAST({ident(c)} AS VARCHAR) END"
        for c, t in checks.items()
    )
    condition = " OR ".join(_does_not_fit(ident(c), t) for c, t in checks.items())
    con = connect(threads=1)
    try:
        row = con.execute(
            f"SELECT rn, {flagged} FROM (SELECT row_number() OVER () AS rn, * FROM {reader}) "
            f"WHERE {condition} LIMIT 1"
        ).fetchone()
    finally:
        con.close()
    if row is None:
        return None
    column, value = next((c, v) for c, v in zip(checks, row[1:], strict=True) if v is not None)
    counted = " (header not counted)" if spec.format == "csv" and spec.options.header else ""
    return _value_message(
        spec, column, value, f"in row {row[0]}{counted}", checks[column], column not in declared
    )


def _value_message(
    spec: SourceSpec, column: str, value: str, where: str, type_name: str, detected: bool
) -> str:
    """The error for a value that does not convert to its column's type."""
    if detected:
        why = " (the type DuckDB detected from the first rows)"
        fix = f"correct the data, or declare the column's type under `columns:` ({column}: ...)"
    else:
        why, fix = "", "correct the data or declare the column with a type that fits"
    return (
        f"{spec.file} [columns.{column}]: value {value!r} {where} of {spec.path} is not a "
        f"valid {type_name}{why}. Fix: {fix}"
    )


def _layout_error(spec: SourceSpec, path: Path) -> str | None:
    """After DuckDB found no consistent CSV layout: the first line that breaks it, if any.

    The first record (read as CSV) fixes the number of columns; DuckDB then reads every line as
    text, guessing nothing, and reports the first line with another number of fields.
    """
    import csv

    import duckdb

    options = spec.options
    delimiter, quote = options.delimiter or ",", options.quote or '"'
    if len(delimiter) != 1 or len(quote) != 1:
        return None
    try:
        with open(path, encoding="utf-8-sig", newline="") as handle:
            for _ in range(options.skip):
                handle.readline()
            first = next(csv.reader(handle, delimiter=delimiter, quotechar=quote), [])
    except (OSError, UnicodeDecodeError, csv.Error):
        return None
    text_columns = {f"column{index}": "VARCHAR" for index in range(len(first))}
    plain = replace(spec, columns=())  # NOTE: `names` would clash with `columns` below
    call = _reader(plain, path).removesuffix(")")
    con = connect(threads=1)
    try:
        con.execute(
            f"SELECT count(*) FROM {call}, auto_detect = false, columns = {_struct(text_columns)})"
        ).fetchall()
    except duckdb.Error as error:
        message = str(error)
        return _explain_source(spec, message, None) if _CSV_LINE.search(message) else None
    finally:
        con.close()
    return None


def _diagnose_source(spec: SourceSpec, path: Path) -> str | None:
    """After a failed load: the value that did not convert, with its column and row."""
    import duckdb

    declared = {c.name: c.type for c in spec.columns if c.type}
    try:
        if spec.format == "parquet":
            return _bad_value_message(
                spec, f"read_parquet({file_literal(path)})", declared, declared
            )
        con = connect(threads=1)
        try:
            columns = _sniff(con, spec, path)
        finally:
            con.close()
        types = {name: declared.get(name, t) for name, t in columns}
        checks = {c: t for c, t in types.items() if c in declared or t in _INTEGER_TYPES}
        if not checks:
            return None
        read_as = {c: "VARCHAR" if c in checks else t for c, t in types.items()}
        return _bad_value_message(spec, _reader(spec, path, columns, read_as), checks, declared)
    except (duckdb.Error, ExecutionError):
        return None


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
        as_of = bool(base_time and other.event_time_col)
        if as_of:
            condition.append(f"b.{ident(base_time)} >= {alias}.{ident(other.event_time_col)}")
            joins.append(f"ASOF LEFT JOIN {_view(ref)} {alias} ON {' AND '.join(condition)}")
        else:
            joins.append(f"LEFT JOIN {_view(ref)} {alias} ON {' AND '.join(condition)}")
        for column, name in other.joined_names(columns, taken, as_of):
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
    wanted = spec.output_names(available)
    features = spec.features if spec.features is not None else ()
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


def _bounds_text(check: RuleCheck) -> str:
    if check.min is not None and check.max is not None:
        return f"outside [{check.min:g}, {check.max:g}]"
    if check.min is not None:
        return f"below the minimum {check.min:g}"
    return f"above the maximum {check.max:g}"


def run_check(
    con: duckdb.DuckDBPyConnection, check: RuleCheck, target_id: str, snapshot: Path
) -> CheckOutcome:
    """Evaluates one rule check against the checked node's output."""
    if check.type == "profile_check":
        return profile_check(con, check, target_id, snapshot)
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
            bad == 0, f"{bad} row(s) of {check.columns[0]} {_bounds_text(check)}", bad
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
_JSON_LINE = re.compile(r"in line (\d+): (.+)")


def _explain(spec: NodeSpec, error: Exception, data_path: Path | None) -> str:
    """DuckDB's error, led by the node file and, for data errors, column, row and value."""
    text = str(error).strip()
    if isinstance(spec, SourceSpec):
        return _explain_source(spec, text or type(error).__name__, data_path)
    key = "transform" if spec.sql else "inputs"
    return f"{spec.file} [{key}]: DuckDB error: {text}"


def _explain_source(spec: SourceSpec, text: str, data_path: Path | None) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    line, column, value = (p.search(text) for p in (_CSV_LINE, _CSV_COLUMN, _CSV_VALUE))
    if line and column and value:
        where = f"on line {line.group(1)}"
        detected = "auto-detected" in text
        return _value_message(
            spec, column.group(1), value.group(1), where, value.group(2), detected
        )
    if line:
        detail = next((x for x in lines[1:] if not x.startswith("Original Line")), "malformed line")
        detail = detail.rstrip(".")
        fix = (
            "save the file as UTF-8"
            if "unicode" in detail.lower()
            else "correct that line (quote values that contain the delimiter), or set "
            "`delimiter`, `quote`, `escape` or `skip` under `params:` to match the file"
        )
        return f"{spec.file} [table]: line {line.group(1)} of {spec.path}: {detail}. Fix: {fix}"
    json_line = _JSON_LINE.search(text)
    if json_line:
        return (
            f"{spec.file} [table]: line {json_line.group(1)} of {spec.path}: "
            f"{json_line.group(2).strip()}. Fix: correct the data, or declare the column's "
            "type under `columns:`"
        )
    if data_path is not None and (_FRACTION_MARK in text or "Conversion Error" in text):
        diagnosed = _diagnose_source(spec, data_path)
        if diagnosed:
            return diagnosed
    if "sniffing file" in text:
        located = _layout_error(spec, data_path) if data_path is not None else None
        if located:
            return located
        return (
            f"{spec.file} [params]: {spec.path} is not CSV in the layout expected (delimiter "
            f"{json.dumps(spec.options.delimiter or ',')}, header line "
            f"{'yes' if spec.options.header else 'no'}, skip {spec.options.skip}). Fix: set "
            "`delimiter`, `quote`, `escape` or `skip` under `params:` to match the file, and "
            "save it as UTF-8"
        )
    first = lines[0].split(": ", 1)[-1] if lines else text
    return f"{spec.file} [table]: cannot read {spec.path}: {first}"


# ---------------------------------------------------------------------------------------------
# Profiles: column statistics of one input, and the checks that read them
# ---------------------------------------------------------------------------------------------

# The output of a profile: one row per profiled column. `min`/`max` are text because columns of
# every type are profiled; mean and quartiles are computed for numeric columns only.
PROFILE_COLUMNS: tuple[tuple[str, str], ...] = (
    ("column_name", "VARCHAR"),
    ("column_type", "VARCHAR"),
    ("row_count", "BIGINT"),
    ("null_count", "BIGINT"),
    ("null_percent", "DOUBLE"),
    ("distinct_count", "BIGINT"),
    ("min", "VARCHAR"),
    ("max", "VARCHAR"),
    ("mean", "DOUBLE"),
    ("p25", "DOUBLE"),
    ("median", "DOUBLE"),
    ("p75", "DOUBLE"),
)
_NUMERIC_TYPE = re.compile(
    r"^(?:U?(?:TINYINT|SMALLINT|INTEGER|BIGINT|HUGEINT)|FLOAT|DOUBLE|DECIMAL\(\d+,\s*\d+\))$"
)
_NESTED_TYPE = re.compile(r"(?:\[\d*\]$|^(?:STRUCT|MAP|UNION)\()")
_COMPARE: Mapping[str, Any] = {
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    "=": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
}


def execute_profile(
    con: duckdb.DuckDBPyConnection, spec: ProfileSpec, inputs: Mapping[str, Path], out_path: Path
) -> NodeOutput:
    """Profiles the one input of `spec` and writes one row per column to `out_path`.

    Raises:
        ExecutionError: a column named under `profile.columns` is missing, or DuckDB failed.
    """
    import duckdb

    try:
        prepare(con)
        register_inputs(con, inputs)
        rows = copy_to_parquet(con, profile_query(con, spec), out_path)
    except duckdb.Error as error:
        raise ExecutionError(
            spec.id, f"{spec.file}: DuckDB error while profiling {spec.target}: {error}"
        ) from None
    return NodeOutput(rows, PROFILE_COLUMNS)


def profile_query(con: duckdb.DuckDBPyConnection, spec: ProfileSpec) -> str:
    """One query computing every statistic in a single pass over the input.

    The aggregates of all columns are computed side by side, then unnested into one row per
    column, in the input's column order (or the order of `profile.columns`).
    """
    table = _view(spec.target)
    available = describe(con, f"SELECT * FROM {table}")
    columns = available
    if spec.selected_columns is not None:
        types = dict(available)
        missing = [c for c in spec.selected_columns if c not in types]
        if missing:
            raise ExecutionError(
                spec.id,
                f"{spec.file} [profile.columns]: column(s) {', '.join(missing)} not in "
                f"{spec.target}; it has: {', '.join(types)}. Fix: correct the names under "
                "`profile.columns`",
            )
        columns = [(c, types[c]) for c in spec.selected_columns]
    if not columns:
        raise ExecutionError(spec.id, f"{spec.file}: {spec.target} has no column to profile")

    aggregates = ["count(*) AS n"]
    rows = []
    for index, (name, type_name) in enumerate(columns):
        column, alias = ident(name), f"c{index}_"
        nested = bool(_NESTED_TYPE.search(type_name))
        distinct = f"CAST({column} AS VARCHAR)" if nested else column
        aggregates += [
            f"count({column}) AS {alias}filled",
            f"count(DISTINCT {distinct}) AS {alias}d",
        ]
        low = high = "CAST(NULL AS VARCHAR)"
        if not nested:
            aggregates += [
                f"CAST(min({column}) AS VARCHAR) AS {alias}min",
                f"CAST(max({column}) AS VARCHAR) AS {alias}max",
            ]
            low, high = f"{alias}min", f"{alias}max"
        mean = p25 = median = p75 = "CAST(NULL AS DOUBLE)"
        if _NUMERIC_TYPE.match(type_name):
            value = f"CAST({column} AS DOUBLE)"
            aggregates += [
                f"avg({value}) AS {alias}mean",
                f"quantile_cont({value}, [0.25, 0.5, 0.75]) AS {alias}q",
            ]
            mean, p25, median, p75 = (
                f"{alias}mean",
                f"{alias}q[1]",
                f"{alias}q[2]",
                f"{alias}q[3]",
            )
        fields = {
            "column_name": literal(name),
            "column_type": literal(type_name),
            "row_count": "CAST(n AS BIGINT)",
            "null_count": f"CAST(n - {alias}filled AS BIGINT)",
            "null_percent": f"CAST(CASE WHEN n = 0 THEN 0 ELSE 100.0 * (n - {alias}filled) / n "
            "END AS DOUBLE)",
            "distinct_count": f"CAST({alias}d AS BIGINT)",
            "min": low,
            "max": high,
            "mean": mean,
            "p25": p25,
            "median": median,
            "p75": p75,
        }
        rows.append("{" + ", ".join(f"{literal(k)}: {v}" for k, v in fields.items()) + "}")
    return (
        f"SELECT unnest([{', '.join(rows)}], recursive := true) "
        f"FROM (SELECT {', '.join(aggregates)} FROM {table})"
    )


def profile_check(
    con: duckdb.DuckDBPyConnection, check: RuleCheck, target_id: str, snapshot: Path
) -> CheckOutcome:
    """Compares one statistic of a profile's output with the check's threshold.

    The check fails when the comparison holds (`warn: "> 50"` warns when the metric exceeds
    50). A statistic that is empty (no values) does not fail it.

    Raises:
        ExecutionError: the column was not profiled, or the statistic is not a number.
    """
    prepare(con)
    register_inputs(con, {target_id: snapshot})
    table = _view(target_id)
    metric = check.metric or ""
    if metric not in dict(PROFILE_COLUMNS):
        raise ExecutionError(target_id, f"not supported yet: profile metric {metric!r}")
    column = check.columns[0] if check.columns else None
    if column is None:
        row = con.execute(f"SELECT max({ident(metric)}), 'BIGINT' FROM {table}").fetchone()
    else:
        row = con.execute(
            f"SELECT {ident(metric)}, column_type FROM {table} WHERE column_name = ?", [column]
        ).fetchone()
    if row is None:
        profiled = [r[0] for r in con.execute(f"SELECT column_name FROM {table}").fetchall()]
        raise ExecutionError(
            target_id,
            f"profile_check: column {column!r} is not profiled by {target_id}; profiled "
            f"columns: {', '.join(profiled)}. Fix: correct `column:` or add it to "
            "`profile.columns`",
        )
    value, column_type = row
    subject = f"{metric} of {column}" if column else metric
    if metric in ("mean", "p25", "median", "p75") and not _NUMERIC_TYPE.match(column_type):
        raise ExecutionError(
            target_id,
            f"profile_check: {subject} is not computed: {column} is {column_type}, not a "
            "number. Fix: check a numeric column, or use null_percent, distinct_count, ...",
        )
    level = "warn" if check.severity == "warn" else "fail"
    rule = f"{level} when {check.operator} {check.threshold:g}"
    if value is None:
        return CheckOutcome(True, f"{subject} is empty (no values); {rule}")
    try:
        number = float(value)
    except ValueError:
        raise ExecutionError(
            target_id,
            f"profile_check: {subject} is {value!r}, not a number ({column} is {column_type}). "
            "Fix: compare min/max of numeric columns only",
        ) from None
    failed = _COMPARE[check.operator or "="](number, check.threshold)
    return CheckOutcome(not failed, f"{subject} is {number:g}; {rule}", metadata={"value": number})
