"""Loading sources with DuckDB: every reader decision is explicit and no value changes silently.

These call the engine directly (no Dagster), on data files written by `make_project`.
"""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pytest

from seeknal_dagster import engine
from seeknal_dagster.errors import ExecutionError
from seeknal_dagster.project import load_project
from seeknal_dagster.specs import SourceSpec

# DuckDB guesses types from the first 20,480 rows; the bad values below come after them.
LATE = 30_000


def source_yml(table: str, fmt: str = "csv", extra: str = "") -> str:
    return f"kind: source\nname: data\nsource: {fmt}\ntable: {table}\n{extra}"


def load(
    make_project, data: str | bytes, extra: str = "", table: str = "data/file.csv", fmt: str = "csv"
) -> list[tuple]:
    """Loads the source of a one-node project and returns its rows in file order.

    Raises:
        ExecutionError: the source does not load.
    """
    spec, path = make_source(make_project, data, extra, table, fmt)
    return run_source(spec, path)[1]


def make_source(
    make_project, data: str | bytes, extra: str = "", table: str = "data/file.csv", fmt: str = "csv"
) -> tuple[SourceSpec, Path]:
    root = make_project({table: data, "seeknal/data.yml": source_yml(table, fmt, extra)})
    project = load_project(root)
    spec = project.nodes["source.data"]
    assert isinstance(spec, SourceSpec)
    return spec, project.resolve_path(spec.path)


def run_source(spec: SourceSpec, path: Path) -> tuple[list[tuple[str, str]], list[tuple]]:
    """(columns, rows) of the source's output, through `engine.execute_node`."""
    out = path.parent / "out.parquet"
    con = engine.connect()
    try:
        output = engine.execute_node(con, spec, {}, {}, out, path)
    finally:
        con.close()
    rows = duckdb.connect().execute(f"SELECT * FROM read_parquet('{out}')").fetchall()
    return list(output.columns), rows


def failure(make_project, data: str | bytes, extra: str = "", **kwargs: str) -> str:
    with pytest.raises(ExecutionError) as raised:
        load(make_project, data, extra, **kwargs)
    return str(raised.value)


def numbers(late_value: str, column_name: str = "v") -> str:
    head = f"id,{column_name}\n" + "".join(f"{i},{i}\n" for i in range(LATE))
    return head + f"{LATE},{late_value}\n"


# --- header and dialect ------------------------------------------------------------------------


def test_source_header_false_keeps_the_first_row(make_project) -> None:
    rows = load(make_project, "alice,oslo\nbob,bergen\n", "params: {header: false}\n")

    assert rows == [("alice", "oslo"), ("bob", "bergen")]


def test_source_header_false_names_columns_from_declaration(make_project) -> None:
    spec, path = make_source(
        make_project,
        "alice,oslo\nbob,bergen\n",
        "params: {header: false}\ncolumns: {name: string, city: string}\n",
    )

    columns, rows = run_source(spec, path)

    assert columns == [("name", "VARCHAR"), ("city", "VARCHAR")]
    assert rows == [("alice", "oslo"), ("bob", "bergen")]


def test_source_header_true_is_the_default_even_for_text_rows(make_project) -> None:
    rows = load(make_project, "name,city\nalice,oslo\n")

    assert rows == [("alice", "oslo")]


def test_source_utf8_bom_is_not_part_of_the_first_column_name(make_project) -> None:
    spec, path = make_source(
        make_project, b"\xef\xbb\xbfid,name\n1,a\n", "columns: {id: integer}\n"
    )

    columns, rows = run_source(spec, path)

    assert columns[0] == ("id", "INTEGER")
    assert rows == [(1, "a")]


def test_source_quoted_fields_with_newlines_and_crlf(make_project) -> None:
    data = b'id,text\r\n1,"hello\r\nworld"\r\n2,"x, y"\r\n3,"say ""hi"""\r\n'

    rows = load(make_project, data)

    assert rows == [(1, "hello\r\nworld"), (2, "x, y"), (3, 'say "hi"')]


def test_source_crlf_line_endings_leave_no_carriage_returns(make_project) -> None:
    rows = load(make_project, b"id,name\r\n1,a\r\n2,b\r\n")

    assert rows == [(1, "a"), (2, "b")]


def test_source_quote_character_is_not_guessed_from_the_first_rows(make_project) -> None:
    data = "id,name\n" + "".join(f"{i},n{i}\n" for i in range(LATE)) + f'{LATE},"Smith"\n'

    rows = load(make_project, data)

    assert rows[-1] == (LATE, "Smith")


def test_source_comment_character_is_not_guessed(make_project) -> None:
    rows = load(make_project, "id,tag\n1,a\n#2,b\n3,c\n")

    assert rows == [("1", "a"), ("#2", "b"), ("3", "c")]


def test_source_header_only_gives_zero_rows_with_declared_types(make_project) -> None:
    spec, path = make_source(
        make_project, "id,name,amount\n", "columns: {id: integer, amount: double}\n"
    )

    columns, rows = run_source(spec, path)

    assert columns == [("id", "INTEGER"), ("name", "VARCHAR"), ("amount", "DOUBLE")]
    assert rows == []
    assert engine.source_columns(spec, path) == columns


def test_source_path_with_single_quote_loads(make_project) -> None:
    rows = load(make_project, "id\n1\n", table="data/o'brien.csv")

    assert rows == [(1,)]


@pytest.mark.parametrize("name", ["a[1].csv", "b*.csv", "c?.csv"])
def test_source_path_with_glob_characters_reads_only_that_file(make_project, name: str) -> None:
    spec, path = make_source(make_project, "id\n1\n", table=f"data/{name}")
    for neighbour in ("a1.csv", "bx.csv", "cx.csv"):
        (path.parent / neighbour).write_text("id\n99\n")

    assert run_source(spec, path)[1] == [(1,)]


def test_source_column_names_with_quotes_reach_duckdb_quoted(make_project) -> None:
    data = '"it\'s ""x""",b\n1,2\n'
    spec, path = make_source(make_project, data, "columns:\n  'it''s \"x\"': integer\n")

    columns, rows = run_source(spec, path)

    assert columns == [('it\'s "x"', "INTEGER"), ("b", "BIGINT")]
    assert rows == [(1, 2)]


def test_source_declared_delimiter_is_used(make_project) -> None:
    rows = load(make_project, "a;b\n1;2\n", "params: {delimiter: ';'}\n")

    assert rows == [(1, 2)]


# --- values that do not fit -------------------------------------------------------------------


def test_source_late_fraction_in_detected_integer_column_fails(make_project) -> None:
    message = failure(make_project, numbers("1.5"))

    assert "[columns.v]" in message and "'1.5'" in message
    assert f"row {LATE + 1}" in message and "BIGINT" in message
    assert "detected from the first rows" in message and "Fix:" in message


def test_source_late_text_in_detected_integer_column_fails(make_project) -> None:
    message = failure(make_project, numbers("oops"))

    assert "[columns.v]" in message and "'oops'" in message and f"row {LATE + 1}" in message


def test_source_late_bad_date_in_detected_date_column_fails_with_line(make_project) -> None:
    data = "id,d\n" + "".join(f"{i},2024-01-01\n" for i in range(LATE)) + "1,2024-13-45\n"

    message = failure(make_project, data)

    assert "[columns.d]" in message and "'2024-13-45'" in message
    assert f"line {LATE + 2}" in message and "DATE" in message


def test_source_fraction_in_declared_integer_column_fails(make_project) -> None:
    data = "id,v\n" + "".join(f"{i},{i}.0\n" for i in range(LATE)) + f"{LATE},2.5\n"

    message = failure(make_project, data, "columns: {v: integer}\n")

    assert "[columns.v]" in message and "'2.5'" in message and "INTEGER" in message
    assert "detected" not in message


def test_source_whole_numbers_written_with_decimals_load_as_integers(make_project) -> None:
    rows = load(make_project, "id,v\n1,2.0\n2,1e3\n", "columns: {v: integer}\n")

    assert rows == [(1, 2), (2, 1000)]


def test_source_late_bad_value_in_declared_double_names_line(make_project) -> None:
    data = "id,amount\n" + "".join(f"{i},{i}.5\n" for i in range(LATE)) + f"{LATE},n/a\n"

    message = failure(make_project, data, "columns: {amount: double}\n")

    assert "[columns.amount]" in message and "'n/a'" in message
    assert f"line {LATE + 2}" in message


def test_source_late_short_row_names_its_line(make_project) -> None:
    message = failure(make_project, numbers("").replace(f"{LATE},\n", f"{LATE}\n"))

    assert f"line {LATE + 2}" in message and "Expected Number of Columns: 2 Found: 1" in message


def test_source_empty_values_are_nulls_not_errors(make_project) -> None:
    rows = load(make_project, numbers(""))

    assert rows[-1] == (LATE, None) and len(rows) == LATE + 1


# --- files that cannot be read ----------------------------------------------------------------


def test_source_empty_file_is_an_error_naming_it(make_project) -> None:
    message = failure(make_project, "")

    assert "data/file.csv is empty (0 bytes)" in message and "header line" in message


def test_source_blank_file_is_an_error_naming_it(make_project) -> None:
    message = failure(make_project, "\n\r\n")

    assert "data/file.csv has only blank lines" in message


def test_source_declared_column_missing_lists_the_file_columns(make_project) -> None:
    message = failure(make_project, "id,name\n1,a\n", "columns: {idx: integer}\n")

    assert "declared column(s) idx not found" in message
    assert "the file has: id, name" in message


def test_source_semicolon_header_without_delimiter_asks_for_it(make_project) -> None:
    message = failure(make_project, "a;b\n1;2\n")

    assert "[params.delimiter]" in message and "one column named 'a;b'" in message
    assert 'delimiter: ";"' in message


def test_source_title_line_before_header_is_not_skipped_silently(make_project) -> None:
    message = failure(make_project, "Report 2024\nid,name\n1,a\n")

    assert "line 2" in message and "skip" in message


def test_source_title_line_skipped_when_declared(make_project) -> None:
    rows = load(make_project, "Report 2024\nid,name\n1,a\n", "params: {skip: 1}\n")

    assert rows == [(1, "a")]


def test_source_not_utf8_says_so(make_project) -> None:
    message = failure(make_project, "id,name\n1,caf\xe9\n".encode("latin-1"))

    assert "UTF-8" in message and "data/file.csv" in message


def test_source_header_false_column_count_mismatch(make_project) -> None:
    message = failure(make_project, "a,b\n", "params: {header: false}\ncolumns: {x: string}\n")

    assert "has 2 column(s) but `columns:` lists 1" in message


def test_source_empty_json_file_is_an_error(make_project) -> None:
    message = failure(make_project, "", table="data/file.json", fmt="json")

    assert "data/file.json is empty (0 bytes)" in message


# --- JSON and parquet --------------------------------------------------------------------------


def jsonl(rows: list[dict]) -> str:
    return "".join(json.dumps(row) + "\n" for row in rows)


def test_source_json_key_first_seen_late_is_kept(make_project) -> None:
    data = jsonl([{"id": i} for i in range(LATE)] + [{"id": LATE, "extra": "x"}])

    rows = load(make_project, data, table="data/file.jsonl", fmt="jsonl")

    assert rows[-1] == (LATE, "x") and len(rows) == LATE + 1


def test_source_json_late_fraction_is_not_rounded(make_project) -> None:
    data = jsonl([{"id": i, "v": i} for i in range(LATE)] + [{"id": LATE, "v": 1.5}])

    rows = load(make_project, data, table="data/file.jsonl", fmt="jsonl")

    assert rows[-1] == (LATE, 1.5)


def test_source_json_fraction_in_declared_integer_fails(make_project) -> None:
    data = jsonl([{"id": 1, "v": 2}, {"id": 2, "v": 2.5}])

    with pytest.raises(ExecutionError) as raised:
        load(make_project, data, "columns: {v: integer}\n", "data/file.jsonl", "jsonl")

    assert "[columns.v]" in str(raised.value) and "'2.5'" in str(raised.value)
    assert "row 2" in str(raised.value)


def test_source_parquet_fraction_in_declared_integer_fails(make_project, tmp_path) -> None:
    parquet = tmp_path / "values.parquet"
    duckdb.connect().execute(
        f"COPY (SELECT 1 AS id, 2.0::DOUBLE AS v UNION ALL SELECT 2, 1.5) TO '{parquet}'"
    )

    with pytest.raises(ExecutionError) as raised:
        load(
            make_project,
            parquet.read_bytes(),
            "columns: {v: integer}\n",
            "data/v.parquet",
            "parquet",
        )

    assert "[columns.v]" in str(raised.value) and "'1.5'" in str(raised.value)
    assert "row 2" in str(raised.value)


def test_source_parquet_declared_types_cast(make_project, tmp_path) -> None:
    parquet = tmp_path / "values.parquet"
    duckdb.connect().execute(f"COPY (SELECT 1 AS id, 2.0::DOUBLE AS v) TO '{parquet}'")
    spec, path = make_source(
        make_project, parquet.read_bytes(), "columns: {v: integer}\n", "data/v.parquet", "parquet"
    )

    assert run_source(spec, path) == ([("id", "INTEGER"), ("v", "INTEGER")], [(1, 2)])


def test_file_literal_brackets_glob_characters_and_doubles_quotes() -> None:
    assert engine.file_literal("/d/o'b[1]*?.csv") == "'/d/o''b[[]1][*][?].csv'"
