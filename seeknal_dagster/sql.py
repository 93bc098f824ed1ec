"""Node SQL: which nodes it reads, its executable and canonical text, and its output columns.

Every function here is pure: SQL text in (DuckDB dialect, analysed with sqlglot), facts out. Nothing
touches a file or a database.
"""

from __future__ import annotations

import bisect
import functools
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import NamedTuple

import sqlglot
from sqlglot import exp
from sqlglot.dialects.dialect import Dialect
from sqlglot.errors import ErrorLevel, ParseError, SqlglotError
from sqlglot.optimizer.annotate_types import TypeAnnotator, annotate_types
from sqlglot.optimizer.normalize_identifiers import normalize_identifiers
from sqlglot.optimizer.qualify import qualify
from sqlglot.optimizer.scope import Scope, build_scope, traverse_scope
from sqlglot.schema import MappingSchema

from seeknal_dagster.errors import SqlError

NODE_KINDS = (
    "source",
    "transform",
    "feature_group",
    "exposure",
    "rule",
    "aggregation",
    "second_order_aggregation",
    "model",
    "profile",
    "semantic_model",
    "metric",
)

_DIALECT = "duckdb"
_DUCKDB = Dialect.get_or_raise(_DIALECT)
_CANONICAL = {"identify": True, "comments": False, "unsupported_level": ErrorLevel.RAISE}
_NAME = r"[A-Za-z_][A-Za-z0-9_]*"

# ---------------------------------------------------------------------------------------------
# Lexical layer: where the code, string literals, quoted identifiers and comments are.
# ---------------------------------------------------------------------------------------------

_CODE, _COMMENT, _STRING, _IDENT = "code", "comment", "string", "ident"

# What may open something that is not plain code. `E'...'` strings take backslash escapes and
# `$tag$...$tag$` strings end at the same tag; neither may continue a word.
_OPENER = re.compile(r"--|/\*|(?<![\w$])[eE]'|'|\"|(?<![\w$])\$(?:[A-Za-z_]\w*)?\$")
_SINGLE_QUOTED_END = re.compile(r"(?:[^']|'')*'")
_ESCAPED_QUOTED_END = re.compile(r"(?:[^'\\]|\\.|'')*'", re.DOTALL)
_DOUBLE_QUOTED_END = re.compile(r'(?:[^"]|"")*"')
_BLOCK_COMMENT_MARK = re.compile(r"/\*|\*/")

# `ref('kind.name')` / `ref("kind.name")`, matched on text whose comments are blanked out.
_REF_CALL = re.compile(
    rf"(?<![\w$.\"])ref\s*\(\s*(?:'({_NAME})\.({_NAME})'|\"({_NAME})\.({_NAME})\")\s*\)",
    re.IGNORECASE,
)


class _Span(NamedTuple):
    start: int
    end: int
    kind: str


@functools.lru_cache(maxsize=4096)
def _spans(sql: str) -> tuple[_Span, ...]:
    """Cut the text into consecutive code, comment, string and quoted-identifier spans."""
    spans: list[_Span] = []
    pos, size = 0, len(sql)
    while pos < size:
        opener = _OPENER.search(sql, pos)
        if opener is None:
            spans.append(_Span(pos, size, _CODE))
            break
        if opener.start() > pos:
            spans.append(_Span(pos, opener.start(), _CODE))
        end, kind = _closing(sql, opener)
        spans.append(_Span(opener.start(), end, kind))
        pos = end
    return tuple(spans)


def _closing(sql: str, opener: re.Match[str]) -> tuple[int, str]:
    """Where the comment, string or identifier that `opener` starts ends (text end if unclosed)."""
    token, after, size = opener.group(), opener.end(), len(sql)
    if token == "--":
        newline = sql.find("\n", after)
        return (size if newline < 0 else newline), _COMMENT
    if token == "/*":
        # NOTE: DuckDB, like PostgreSQL, nests block comments.
        depth = 1
        for mark in _BLOCK_COMMENT_MARK.finditer(sql, after):
            depth += 1 if mark.group() == "/*" else -1
            if depth == 0:
                return mark.end(), _COMMENT
        return size, _COMMENT
    if token.startswith("$"):
        close = sql.find(token, after)
        return (size if close < 0 else close + len(token)), _STRING
    if token == '"':
        match = _DOUBLE_QUOTED_END.match(sql, after)
        return (match.end() if match else size), _IDENT
    pattern = _SINGLE_QUOTED_END if token == "'" else _ESCAPED_QUOTED_END
    match = pattern.match(sql, after)
    return (match.end() if match else size), _STRING


@functools.lru_cache(maxsize=4096)
def _blank_comments(sql: str) -> str:
    """The text with every comment replaced by spaces, so that offsets are unchanged."""
    pieces = [
        re.sub(r"[^\n]", " ", sql[s.start : s.end]) if s.kind == _COMMENT else sql[s.start : s.end]
        for s in _spans(sql)
    ]
    return "".join(pieces)


def _kind_at(sql: str, offset: int) -> str:
    spans = _spans(sql)
    index = bisect.bisect_right([s.start for s in spans], offset) - 1
    return spans[index].kind


def _ref_calls(sql: str) -> list[tuple[int, int, str]]:
    """Every `ref('kind.name')` in code (not in a string or comment): start, end, node id."""
    calls = []
    for match in _REF_CALL.finditer(_blank_comments(sql)):
        if _kind_at(sql, match.start()) != _CODE:
            continue
        kind, name = (match.group(1), match.group(2)) if match.group(1) else match.group(3, 4)
        calls.append((match.start(), match.end(), f"{kind}.{name}"))
    return calls


# ---------------------------------------------------------------------------------------------
# Parsing
# ---------------------------------------------------------------------------------------------


def _rewrite_refs(sql: str) -> tuple[str, list[tuple[int, int]]]:
    """`sql` with each `ref('kind.name')` spelled `"kind"."name"`, and where the text moved.

    The second item lists, per replacement, its end in the new text and the cumulative shift
    (new offset minus original offset) from there on.
    """
    pieces, shifts, position, shift = [], [], 0, 0
    for start, end, node_id in _ref_calls(sql):
        kind, name = node_id.split(".", 1)
        quoted = f'"{kind}"."{name}"'
        pieces += [sql[position:start], quoted]
        shift += len(quoted) - (end - start)
        shifts.append((end + shift, shift))
        position = end
    pieces.append(sql[position:])
    return "".join(pieces), shifts


def _parse_statements(sql: str) -> tuple[exp.Expr, ...]:
    """Parse SQL (refs already rewritten) into fresh sqlglot trees, raising `SqlError`."""
    try:
        parsed = sqlglot.parse(sql, read=_DIALECT)
    except ParseError as error:
        first = error.errors[0] if error.errors else {}
        where = f" (line {first['line']}, column {first['col']})" if "line" in first else ""
        reason = f"{first.get('description', str(error))}{where}"
    except SqlglotError as error:
        reason = str(error)
    except RecursionError:
        reason = "it is nested too deeply for the parser"
    else:
        return tuple(statement for statement in parsed if statement is not None)
    raise SqlError(f"the SQL cannot be parsed as DuckDB SQL: {reason}. Fix the syntax of the query")


class _Facts(NamedTuple):
    """What one parse of a node's SQL tells, computed once per distinct text."""

    tables: tuple[tuple[int, str], ...]  # dotted node tables: offset in the original, node id
    canonical: str | None  # None when sqlglot cannot parse or regenerate the SQL


@functools.lru_cache(maxsize=4096)
def _facts(sql: str) -> _Facts | None:
    """Parse `sql` once for `references` and `normalize`; None when it does not parse."""
    text, shifts = _rewrite_refs(sql)
    try:
        statements = _parse_statements(text)
    except SqlError:
        return None

    tables = tuple(
        (_original_offset(offset, shifts), node_id)
        for statement in statements
        for offset, node_id in _dotted_tables(statement)
    )
    try:
        # NOTE: folding and the generator modify the trees; they are fresh and dropped after.
        canonical = ";\n".join(
            _DUCKDB.generate(_fold_case(statement), copy=False, **_CANONICAL)
            for statement in statements
        )
    except Exception:  # NOTE: normalize must never raise; it falls back to plain text.
        canonical = None
    return _Facts(tables, canonical)


def _fold_case(statement: exp.Expr) -> exp.Expr:
    """Lower-case the identifiers that name tables, table aliases and column references.

    DuckDB resolves those case-insensitively, quoted or not. Other identifiers are left alone:
    aliases, column lists and struct keys become output names, whose case DuckDB keeps.
    """
    for node in statement.walk():
        if isinstance(node, exp.Identifier) and _is_case_insensitive(node):
            node.set("this", node.this.lower())
        elif isinstance(node, exp.WindowSpec):
            # NOTE: sqlglot keeps a frame's ROWS/RANGE and PRECEDING/FOLLOWING as written.
            for key in ("kind", "start_side", "end_side"):
                if isinstance(node.args.get(key), str):
                    node.set(key, node.args[key].upper())
    return statement


def _is_case_insensitive(identifier: exp.Identifier) -> bool:
    parent, key = identifier.parent, identifier.arg_key
    return (
        isinstance(parent, (exp.Column, exp.Table))
        or (isinstance(parent, exp.TableAlias) and key == "this")
        or (isinstance(parent, exp.Join) and key == "using")
    )


def _original_offset(offset: int, shifts: list[tuple[int, int]]) -> int:
    index = bisect.bisect_right([new_end for new_end, _ in shifts], offset) - 1
    return offset if index < 0 else offset - shifts[index][1]


def _node_table(table: exp.Table) -> str | None:
    """The node id a dotted table name `kind.name` stands for, else None."""
    if table.args.get("catalog") or not isinstance(table.this, exp.Identifier):
        return None
    kind = table.db.lower()
    if kind not in NODE_KINDS:
        return None
    return f"{kind}.{table.name}"


def _dotted_tables(statement: exp.Expr) -> Iterator[tuple[int, str]]:
    """Dotted node tables a statement reads (not the one it creates), with their offsets."""
    written = statement.this if isinstance(statement, (exp.Create, exp.Insert)) else None
    for order, table in enumerate(statement.find_all(exp.Table)):
        node_id = _node_table(table)
        if node_id is None or table is written or (written and table.parent is written):
            continue
        # NOTE: sqlglot records offsets on parsed identifiers; without one, keep walk order.
        start = table.args["db"].meta.get("start")
        yield (start if start is not None else (1 << 40) + order), node_id


# ---------------------------------------------------------------------------------------------
# references / to_duckdb / split_statements / normalize
# ---------------------------------------------------------------------------------------------


def references(sql: str) -> list[str]:
    """The nodes a piece of SQL reads, in order of first appearance, each once.

    A node is read either as a dotted table name whose schema is a node kind
    (`FROM source.transactions t`) or as a `ref('kind.name')` call used as a table. Column
    references such as `source.amount`, CTE names, and text inside string literals or comments
    are not references.

    Args:
        sql: DuckDB SQL, possibly several statements separated by `;`.

    Returns:
        Node ids (`kind.name`). A `ref()` argument is returned whatever its kind, so that an
        unknown kind can be reported by the caller; dotted names only count for known kinds.
        SQL that sqlglot cannot parse is scanned token by token instead; it never raises.
    """
    found = [(start, node_id) for start, _, node_id in _ref_calls(sql)]
    facts = _facts(sql)
    found.extend(_scan_table_names(sql) if facts is None else facts.tables)

    ordered: dict[str, None] = {}
    for _, node_id in sorted(found, key=lambda item: item[0]):
        ordered.setdefault(node_id, None)
    return list(ordered)


_SCAN_TOKEN = re.compile(r'"(?:[^"]|"")*"|[A-Za-z_][\w$]*|\S')
_FROM_LIST_ENDS = frozenset(
    "where group order having qualify window limit offset union except intersect select on "
    "using set values returning pivot unpivot".split()
)


def _scan_table_names(sql: str) -> Iterator[tuple[int, str]]:
    """Dotted node tables found by scanning tokens: names opening an item of a FROM list."""
    text = "".join(
        sql[s.start : s.end] if s.kind in (_CODE, _IDENT) else " " * (s.end - s.start)
        for s in _spans(sql)
    )
    tokens = [(m.start(), m.group()) for m in _SCAN_TOKEN.finditer(text)]
    in_from = [False]  # one flag per parenthesis depth
    expect_item = False
    for index, (start, token) in enumerate(tokens):
        word = token.lower()
        if token == "(":
            in_from.append(False)
        elif token == ")":
            if len(in_from) > 1:
                in_from.pop()
        elif word in ("from", "join"):
            in_from[-1] = True
            expect_item = True
            continue
        elif word in _FROM_LIST_ENDS or token == ";":
            in_from[-1] = False
        elif token == ",":
            expect_item = in_from[-1]
            continue
        elif expect_item:
            node_id = _dotted_name_at(tokens, index)
            if node_id is not None:
                yield start, node_id
        expect_item = False


def _dotted_name_at(tokens: list[tuple[int, str]], index: int) -> str | None:
    """`kind.name` starting at `tokens[index]` and not followed by `.` or `(`, else None."""
    parts = [token for _, token in tokens[index : index + 4]]
    if len(parts) < 3 or parts[1] != ".":
        return None
    if len(parts) == 4 and parts[3] in (".", "("):
        return None
    kind, name = (part.strip('"').replace('""', '"') for part in (parts[0], parts[2]))
    if kind.lower() not in NODE_KINDS or not re.fullmatch(_NAME, name):
        return None
    return f"{kind.lower()}.{name}"


def to_duckdb(sql: str) -> str:
    """The text DuckDB executes: every `ref('kind.name')` becomes `"kind"."name"`.

    Everything else is kept byte for byte, so DuckDB syntax that sqlglot does not round-trip
    (QUALIFY, ASOF joins, EXCLUDE, RANGE INTERVAL windows, ...) reaches DuckDB unchanged.
    `ref(` inside a string literal or a comment is left alone.

    Args:
        sql: DuckDB SQL of a node.

    Returns:
        The executable SQL.
    """
    return _rewrite_refs(sql)[0]


def split_statements(sql: str) -> list[str]:
    """The statements of `sql`, split on `;` outside string literals, identifiers and comments.

    Each statement is trimmed of surrounding whitespace and comments (so that the engine can wrap
    the last one in parentheses); statements with nothing else in them are dropped.

    Args:
        sql: DuckDB SQL, one or several statements.

    Returns:
        The statements in order, each without its `;`.

    Raises:
        SqlError: the text holds no statement at all.
    """
    blanked = _blank_comments(sql)
    cuts = [
        s.start + offset
        for s in _spans(sql)
        if s.kind == _CODE
        for offset, char in enumerate(sql[s.start : s.end])
        if char == ";"
    ]

    statements, start = [], 0
    for end in [*cuts, len(sql)]:
        piece = blanked[start:end]
        content = piece.strip()
        if content:
            first = start + (len(piece) - len(piece.lstrip()))
            statements.append(sql[first : first + len(content)])
        start = end + 1

    if not statements:
        raise SqlError("the SQL holds no statement. Write a query (SELECT ...) for the node")
    return statements


def normalize(sql: str) -> str:
    """A canonical text of `sql` for fingerprints and change detection.

    Whitespace, comments, keyword case, quoting of identifiers, trailing semicolons, line endings
    and the `ref('kind.name')` / `kind.name` spelling do not change the result; a change of logic
    does. SQL is parsed and regenerated by sqlglot; when that fails, comments are stripped and
    whitespace outside string literals and quoted identifiers collapsed, nothing else.

    Args:
        sql: DuckDB SQL of a node.

    Returns:
        The canonical text. Never raises.
    """
    facts = _facts(sql)
    if facts is not None and facts.canonical is not None:
        return facts.canonical
    return _collapse_whitespace(sql)


def _collapse_whitespace(sql: str) -> str:
    """Strip comments and collapse whitespace outside literals and quoted identifiers."""
    pieces, code = [], []
    for span in _spans(sql):
        text = sql[span.start : span.end]
        if span.kind in (_CODE, _COMMENT):
            code.append(" " if span.kind == _COMMENT else text)
            continue
        pieces.append(re.sub(r"\s+", " ", "".join(code)))
        code = []
        pieces.append(text)
    pieces.append(re.sub(r"\s+", " ", "".join(code)))
    return re.sub(r"[\s;]+$", "", "".join(pieces).strip())


# ---------------------------------------------------------------------------------------------
# output_columns / columns_read: the last query analysed against its inputs' columns
# ---------------------------------------------------------------------------------------------

Columns = Sequence[tuple[str, str | None]]

_TEMP_SCHEMA = "main"  # where tables created by earlier statements of the same SQL live
_WRITTEN_NAME = "seeknal_name"  # meta key: an output name as written, before case folding
_WRITTEN_TEXT = "seeknal_text"  # meta key: an unaliased projection's SQL text
_WRITTEN_COLUMNS = "seeknal_columns"  # meta key: a query's column list, `AS name(a, b)`
_SPELLINGS = "seeknal_spellings"  # meta key: lower-case name -> an output name as written

_INTEGERS = {
    exp.DType.TINYINT,
    exp.DType.SMALLINT,
    exp.DType.INT,
    exp.DType.BIGINT,
    exp.DType.UTINYINT,
    exp.DType.USMALLINT,
    exp.DType.UINT,
    exp.DType.UBIGINT,
    exp.DType.INT128,
    exp.DType.UINT128,
}
_FLOATS = {exp.DType.FLOAT, exp.DType.DOUBLE}
_TIMESTAMPS = {
    exp.DType.TIMESTAMP,
    exp.DType.TIMESTAMPNTZ,
    exp.DType.DATETIME,
    exp.DType.TIMESTAMPTZ,
    exp.DType.TIMESTAMP_S,
    exp.DType.TIMESTAMP_MS,
    exp.DType.TIMESTAMP_NS,
}
_DUCKDB_NAMES = {
    exp.DType.BOOLEAN: "BOOLEAN",
    exp.DType.TINYINT: "TINYINT",
    exp.DType.SMALLINT: "SMALLINT",
    exp.DType.INT: "INTEGER",
    exp.DType.BIGINT: "BIGINT",
    exp.DType.INT128: "HUGEINT",
    exp.DType.UTINYINT: "UTINYINT",
    exp.DType.USMALLINT: "USMALLINT",
    exp.DType.UINT: "UINTEGER",
    exp.DType.UBIGINT: "UBIGINT",
    exp.DType.UINT128: "UHUGEINT",
    exp.DType.FLOAT: "FLOAT",
    exp.DType.DOUBLE: "DOUBLE",
    exp.DType.VARCHAR: "VARCHAR",
    exp.DType.TEXT: "VARCHAR",
    exp.DType.CHAR: "VARCHAR",
    exp.DType.NCHAR: "VARCHAR",
    exp.DType.NVARCHAR: "VARCHAR",
    exp.DType.BINARY: "BLOB",
    exp.DType.VARBINARY: "BLOB",
    exp.DType.BLOB: "BLOB",
    exp.DType.DATE: "DATE",
    exp.DType.TIME: "TIME",
    exp.DType.TIMETZ: "TIME WITH TIME ZONE",
    exp.DType.TIMESTAMP: "TIMESTAMP",
    exp.DType.TIMESTAMPNTZ: "TIMESTAMP",
    exp.DType.DATETIME: "TIMESTAMP",
    exp.DType.TIMESTAMPTZ: "TIMESTAMP WITH TIME ZONE",
    exp.DType.TIMESTAMP_S: "TIMESTAMP_S",
    exp.DType.TIMESTAMP_MS: "TIMESTAMP_MS",
    exp.DType.TIMESTAMP_NS: "TIMESTAMP_NS",
    exp.DType.INTERVAL: "INTERVAL",
    exp.DType.UUID: "UUID",
    exp.DType.JSON: "JSON",
    exp.DType.BIT: "BIT",
}


def output_columns(sql: str, inputs: Mapping[str, Columns]) -> list[tuple[str, str | None]]:
    """The columns the last statement of `sql` outputs, found by analysing it against its inputs.

    Stars (`*`, `t.*`, `* EXCLUDE (...)`, `* REPLACE (...)`) are expanded from the inputs'
    columns, CTEs, subqueries, joins (`USING` included) and set operations (names of the first
    branch) are followed, and types are inferred by sqlglot's annotator with DuckDB's rules for
    the common cases (`SUM` of integers is HUGEINT, `SUM` of DECIMAL(p,s) is DECIMAL(38,s), ...).
    Tables created by earlier statements (`CREATE TEMP TABLE x AS SELECT ...`) are known to
    later ones.

    Args:
        sql: DuckDB SQL of a node; the last statement must be a query.
        inputs: Node id (`kind.name`) -> the node's ordered columns as (name, DuckDB type name
            or None when unknown).

    Returns:
        (name, type) per output column, in order. A name is spelled as DuckDB outputs it: an
        alias as written, a column as its source spells it. A type is DuckDB's upper-case name
        (`BIGINT`, `DECIMAL(10,2)`, `VARCHAR[]`), or None when it cannot be inferred. A computed
        column without an alias is named by its SQL text, which may differ from DuckDB's name.

    Raises:
        SqlError: the SQL does not parse, its last statement is not a query, it reads a table
            that is not in `inputs`, a column that its source does not have, or something the
            analysis cannot follow (a table function such as `read_parquet`, ...).
    """
    return list(_analysis(sql, _frozen(inputs)).output)


def columns_read(sql: str, inputs: Mapping[str, Columns]) -> dict[str, set[str]]:
    """The columns of each input that `sql` reads anywhere, for column-level impact analysis.

    A column counts wherever it appears in any statement: select list, WHERE, JOIN ON/USING,
    GROUP BY, HAVING, QUALIFY, ORDER BY, window PARTITION BY/ORDER BY; `SELECT *` over an input
    reads all of its columns (less those excluded with `EXCLUDE`).

    Args:
        sql: DuckDB SQL of a node.
        inputs: Node id -> the node's ordered columns, as for `output_columns`.

    Returns:
        Node id -> the set of its column names (spelled as in `inputs`), for every input node
        the SQL reads as a table; the set is empty when only rows are counted (`COUNT(*)`).

    Raises:
        SqlError: as `output_columns`; in particular when a column read is missing from its
            input, which names that column.
    """
    return {node_id: set(columns) for node_id, columns in _analysis(sql, _frozen(inputs)).read}


_FrozenInputs = tuple[tuple[str, tuple[tuple[str, str | None], ...]], ...]


class _Analysis(NamedTuple):
    output: tuple[tuple[str, str | None], ...]
    read: tuple[tuple[str, frozenset[str]], ...]


def _frozen(inputs: Mapping[str, Columns]) -> _FrozenInputs:
    return tuple((node_id, tuple(map(tuple, columns))) for node_id, columns in inputs.items())


class _Catalog:
    """The tables a node's SQL may read: its inputs, then tables its own statements create."""

    def __init__(self, inputs: _FrozenInputs):
        self.tables: dict[tuple[str, str], dict[str, str]] = {}  # (schema, table) -> col -> type
        self.spelling: dict[tuple[str, str], dict[str, str]] = {}  # lower-case -> as declared
        self.node_ids: dict[tuple[str, str], str] = {}
        for node_id, columns in inputs:
            kind, _, name = node_id.partition(".")
            self._add((kind.lower(), name.lower()), columns)
            self.node_ids[(kind.lower(), name.lower())] = node_id

    def _add(self, key: tuple[str, str], columns: Columns) -> None:
        self.tables[key] = {name.lower(): _schema_type(kind) for name, kind in columns}
        self.spelling[key] = {}
        for name, _ in columns:
            self.spelling[key].setdefault(name.lower(), name)

    def all_spellings(self) -> dict[str, str]:
        """Lower-case column name -> its spelling in the first table that has it."""
        merged: dict[str, str] = {}
        for spelling in self.spelling.values():
            for lower, name in spelling.items():
                merged.setdefault(lower, name)
        return merged

    def add_created(self, name: str, columns: Columns) -> None:
        self._add((_TEMP_SCHEMA, name.lower()), columns)

    def schema(self) -> MappingSchema:
        nested: dict[str, dict[str, dict[str, str]]] = {}
        for (schema, table), columns in self.tables.items():
            nested.setdefault(schema, {})[table] = columns
        return MappingSchema(nested, dialect=_DIALECT, normalize=False)

    def check_reads(self, statement: exp.Expr) -> None:
        """Raise `SqlError` for every table read that is neither an input nor created earlier."""
        for scope in traverse_scope(statement):
            for source in scope.sources.values():
                if not isinstance(source, exp.Table):
                    continue
                if not isinstance(source.this, exp.Identifier):
                    raise SqlError(
                        f"cannot analyse the table expression {source.this.sql(_DIALECT)}: only "
                        "node tables and CTEs can be followed. Read the data through a source "
                        "node instead"
                    )
                key = (source.db or _TEMP_SCHEMA, source.name)
                if key not in self.tables:
                    written = source.copy()
                    written.set("alias", None)
                    known = ", ".join(sorted(self.node_ids.values())) or "none"
                    raise SqlError(
                        f"reads table {written.sql(_DIALECT)}, which is not among the node's "
                        f"inputs (known: {known}). Add it to `inputs` or fix the table name"
                    )


def _schema_type(kind: str | None) -> str:
    """A declared type as sqlglot's schema accepts it; unknown or unreadable types stay UNKNOWN."""
    if not kind:
        return "UNKNOWN"
    try:
        return exp.DataType.build(kind, dialect=_DIALECT).sql(_DIALECT)
    except (SqlglotError, ValueError):
        return "UNKNOWN"


@functools.lru_cache(maxsize=512)
def _analysis(sql: str, inputs: _FrozenInputs) -> _Analysis:
    """Analyse every statement of `sql` in order against `inputs` and what earlier ones create."""
    try:
        return _analyse_statements(sql, inputs)
    except SqlError:
        raise
    except Exception as error:
        # NOTE: sqlglot's optimizer fails in assorted ways on SQL it does not follow; callers
        # are promised a SqlError that says so.
        message = f"cannot analyse the query: sqlglot failed with {type(error).__name__}: {error}"
        raise SqlError(f"{message}. Simplify the query or alias its columns") from error


def _analyse_statements(sql: str, inputs: _FrozenInputs) -> _Analysis:
    statements = _parse_statements(to_duckdb(sql))
    if not statements:
        raise SqlError("the SQL holds no statement. Write a query (SELECT ...) for the node")
    last = statements[-1]
    if not isinstance(last, exp.Query):
        raise SqlError(
            f"the last statement must be a query (SELECT ...), found {last.key.upper()}. "
            "End the SQL with the query whose rows are the node's output"
        )

    catalog = _Catalog(inputs)
    read: dict[str, set[str]] = {}
    for statement in statements[:-1]:
        body = statement.expression
        if isinstance(statement, exp.Create) and isinstance(body, exp.Query):
            columns = _analyse_query(body, catalog, read)
            catalog.add_created(statement.this.find(exp.Table).name, columns)
        elif isinstance(statement, exp.Create) and isinstance(statement.this, exp.Schema):
            definitions = statement.this.find_all(exp.ColumnDef)
            columns = [
                (column.name, _duckdb_type(column.args.get("kind"))) for column in definitions
            ]
            catalog.add_created(statement.this.find(exp.Table).name, columns)
        elif isinstance(statement, exp.Insert) and isinstance(body, exp.Query):
            _analyse_query(body, catalog, read)
    output = _analyse_query(last, catalog, read)

    frozen_read = tuple((node_id, frozenset(columns)) for node_id, columns in read.items())
    return _Analysis(tuple(output), frozen_read)


def _analyse_query(
    query: exp.Query, catalog: _Catalog, read: dict[str, set[str]]
) -> list[tuple[str, str | None]]:
    """Qualify and type one query; record the input columns it reads; return its columns."""
    _remember_written_names(query)
    query = normalize_identifiers(query, dialect=_DIALECT)
    catalog.check_reads(query)

    schema = catalog.schema()
    try:
        query = qualify(query, schema=schema, dialect=_DIALECT, db=_TEMP_SCHEMA, identify=False)
        query = annotate_types(query, schema=schema, expression_metadata=_DUCKDB_TYPES)
    except SqlglotError as error:
        message = f"cannot analyse the query: {error}. Fix the SQL or the node's inputs"
        raise SqlError(message) from error
    root = build_scope(query)
    if root is None:
        raise SqlError("cannot analyse the query: it has no scope. Write a SELECT query")
    _check_expanded(query)

    _record_reads(root, catalog, read)
    spellings = {**catalog.all_spellings(), **query.meta.get(_SPELLINGS, {})}
    names = _output_names(root, spellings, catalog)
    typed = _output_types(query)
    if len(typed) != len(names):  # UNION BY NAME: the union of both sides' names
        names = [spellings.get(name, name) for name, _ in typed]
    return [(name, kind) for name, (_, kind) in zip(names, typed, strict=True)]


def _check_expanded(query: exp.Query) -> None:
    """Raise for projections standing for columns that the analysis cannot list."""
    for select in query.find_all(exp.Select):
        for projection in select.selects:
            inner = projection.unalias()
            if inner.is_star or inner.find(exp.Columns):
                raise SqlError(
                    f"not supported yet: listing the columns of {inner.sql(_DIALECT)} (a struct "
                    "star or a COLUMNS() expression). Name the columns in the select list"
                )


def _remember_written_names(query: exp.Query) -> None:
    """Keep output names as written, and unaliased expressions' text, before case folding."""
    spellings: dict[str, str] = {}
    for node in query.walk():
        if isinstance(node, exp.Alias) and node.args.get("alias"):
            node.args["alias"].meta[_WRITTEN_NAME] = node.alias
            spellings.setdefault(node.alias.lower(), node.alias)
        elif isinstance(node, exp.TableAlias) and node.columns:
            names = [column.name for column in node.columns]
            if isinstance(node.parent, (exp.CTE, exp.Subquery)):
                node.parent.this.meta[_WRITTEN_COLUMNS] = names
            for name in names:
                spellings.setdefault(name.lower(), name)
        elif isinstance(node, exp.PropertyEQ) and isinstance(node.this, exp.Identifier):
            node.this.meta["case_sensitive"] = True  # a struct key names a field: keep its case
        elif isinstance(node, exp.Select):
            for projection in node.expressions:
                if not isinstance(projection, (exp.Alias, exp.Column, exp.Star)):
                    projection.meta[_WRITTEN_TEXT] = projection.sql(_DIALECT)
    query.meta[_SPELLINGS] = spellings


def _record_reads(root: Scope, catalog: _Catalog, read: dict[str, set[str]]) -> None:
    for scope in root.traverse():
        tables = {
            alias: source
            for alias, source in scope.sources.items()
            if isinstance(source, exp.Table)
        }
        for source in tables.values():
            node_id = catalog.node_ids.get((source.db, source.name))
            if node_id is not None:
                read.setdefault(node_id, set())
        # NOTE: qualify has turned USING into ON conditions, so their columns are listed too.
        for column in scope.columns:
            _record_column(tables.get(column.table), column.name, catalog, read)


def _record_column(
    source: exp.Table | None, name: str, catalog: _Catalog, read: dict[str, set[str]]
) -> None:
    if source is None:
        return
    key = (source.db, source.name)
    node_id = catalog.node_ids.get(key)
    spelled = catalog.spelling.get(key, {}).get(name)
    if node_id is not None and spelled is not None:
        read.setdefault(node_id, set()).add(spelled)


def _output_names(
    scope: Scope,
    spellings: dict[str, str],
    catalog: _Catalog,
    memo: dict[int, list[str]] | None = None,
) -> list[str]:
    """Output column names as DuckDB spells them: aliases as written, columns as their source.

    `memo` holds each scope's names once computed: without it, every projection of a query
    would recompute its source's names, exponentially in the depth of nested CTEs.
    """
    memo = {} if memo is None else memo
    if id(scope) in memo:
        return memo[id(scope)]
    branch = scope
    while branch.set_operation_scopes:
        branch = branch.set_operation_scopes[0]
    projections = branch.expression.selects
    names = [
        _output_name(projection, branch, spellings, catalog, memo) for projection in projections
    ]
    written = scope.expression.meta.get(_WRITTEN_COLUMNS) or []
    memo[id(scope)] = [*written[: len(names)], *names[len(written) :]]
    return memo[id(scope)]


def _output_name(
    projection: exp.Expr,
    scope: Scope,
    spellings: dict[str, str],
    catalog: _Catalog,
    memo: dict[int, list[str]],
) -> str:
    alias = projection.args.get("alias") if isinstance(projection, exp.Alias) else None
    if alias is not None and _WRITTEN_NAME in alias.meta:
        return alias.meta[_WRITTEN_NAME]
    inner = projection.this if isinstance(projection, exp.Alias) else projection
    if _WRITTEN_TEXT in inner.meta:
        return inner.meta[_WRITTEN_TEXT]

    if isinstance(inner, exp.Coalesce) and isinstance(inner.this, exp.Column):
        inner = inner.this  # the column of a USING join, merged from both sides
    if isinstance(inner, exp.Column):
        source = scope.sources.get(inner.table)
        if isinstance(source, exp.Table):
            spelled = catalog.spelling.get((source.db, source.name), {}).get(inner.name)
            if spelled is not None:
                return spelled
        elif isinstance(source, Scope):
            branch = source
            while branch.set_operation_scopes:
                branch = branch.set_operation_scopes[0]
            names = _output_names(source, spellings, catalog, memo)
            for candidate, name in zip(branch.expression.selects, names, strict=False):
                if candidate.alias_or_name == inner.name:
                    return name
    return spellings.get(projection.alias_or_name, projection.alias_or_name)


def _output_types(query: exp.Query) -> list[tuple[str, str | None]]:
    """(lower-case name, type) per output column, as the annotator typed the whole query."""
    query_type = query.meta.get("query_type")
    if not isinstance(query_type, exp.DataType) or not query_type.is_type(exp.DType.STRUCT):
        return [(select.alias_or_name, _duckdb_type(select.type)) for select in query.selects]

    typed = [(column.name, column.args.get("kind")) for column in query_type.expressions]
    branches = _set_operation_branches(query)
    if branches and all(len(branch.selects) == len(typed) for branch in branches):
        for position, (name, kind) in enumerate(typed):
            mixed = _decimal_mix([branch.selects[position].type for branch in branches])
            typed[position] = (name, kind if mixed is None else exp.DataType.build(mixed))
    return [(name, _duckdb_type(kind)) for name, kind in typed]


def _set_operation_branches(query: exp.Query) -> list[exp.Query]:
    """The SELECTs a positional set operation combines; empty for anything else."""
    if not isinstance(query, exp.SetOperation) or query.args.get("by_name"):
        return []
    return [
        branch
        for side in (query.this, query.expression)
        for branch in (_set_operation_branches(side.unnest()) or [side.unnest()])
    ]


def _duckdb_type(data_type: exp.DataType | None) -> str | None:
    """DuckDB's own name of a sqlglot type (as DESCRIBE prints it), or None when unknown."""
    if data_type is None:
        return None
    kind = data_type.this
    if kind in _DUCKDB_NAMES:
        return _DUCKDB_NAMES[kind]
    if kind == exp.DType.DECIMAL:
        params = [param.name for param in data_type.expressions]
        precision, scale = {0: ("18", "3"), 1: (*params, "0")}.get(len(params), params[:2])
        return f"DECIMAL({precision},{scale})"
    children = [_duckdb_type(child) for child in data_type.expressions]
    if kind in (exp.DType.ARRAY, exp.DType.LIST) and len(children) == 1 and children[0]:
        return f"{children[0]}[]"
    if kind == exp.DType.MAP and len(children) == 2 and all(children):
        return f"MAP({children[0]}, {children[1]})"
    if kind == exp.DType.STRUCT and data_type.expressions:
        fields = []
        for field in data_type.expressions:
            field_type = _duckdb_type(field.args.get("kind"))
            if not isinstance(field, exp.ColumnDef) or field_type is None:
                return None
            name = field.name if re.fullmatch(_NAME, field.name) else f'"{field.name}"'
            fields.append(f"{name} {field_type}")
        return f"STRUCT({', '.join(fields)})"
    return None


# NOTE: sqlglot's DuckDB annotators, corrected where DuckDB types differently. When DuckDB's rule
# is not modelled (DECIMAL arithmetic precision) the type is left unknown rather than guessed.
_BASE_TYPES = Dialect.get_or_raise(_DIALECT).EXPRESSION_METADATA


def _annotate_sum(annotator: TypeAnnotator, node: exp.Sum) -> exp.Expr:
    argument = node.this.type
    if argument is not None and argument.this in _INTEGERS:
        return annotator._set_type(node, exp.DType.INT128)
    if argument is not None and argument.this == exp.DType.DECIMAL:
        params = [param.name for param in argument.expressions]
        scale = params[1] if len(params) > 1 else ("0" if params else "3")
        return annotator._set_type(node, exp.DataType.build(f"DECIMAL(38, {scale})"))
    if argument is not None and argument.this in _FLOATS:
        return annotator._set_type(node, exp.DType.DOUBLE)
    return _BASE_TYPES[exp.Sum]["annotator"](annotator, node)


def _annotate_arithmetic(annotator: TypeAnnotator, node: exp.Binary) -> exp.Expr:
    base = _BASE_TYPES.get(type(node), {}).get("annotator")
    if base is not None:
        base(annotator, node)
    else:
        annotator._annotate_binary(node)
    left = node.left.type.this if node.left.type else exp.DType.UNKNOWN
    right = node.right.type.this if node.right.type else exp.DType.UNKNOWN

    if isinstance(node, exp.Sub) and left == right == exp.DType.DATE:
        return annotator._set_type(node, exp.DType.BIGINT)
    if isinstance(node, exp.Sub) and left in _TIMESTAMPS and right in _TIMESTAMPS:
        return annotator._set_type(node, exp.DType.INTERVAL)
    if isinstance(node, (exp.Add, exp.Sub)) and {left, right} - _INTEGERS == {exp.DType.DATE}:
        return annotator._set_type(node, exp.DType.DATE)  # a date plus or minus days
    if exp.DType.DECIMAL in (left, right):
        mixed = _decimal_mix([node.left.type, node.right.type]) or exp.DType.UNKNOWN
        return annotator._set_type(node, mixed)  # NOTE: DECIMAL precision rules not modelled
    return node


def _annotate_division(annotator: TypeAnnotator, node: exp.Binary) -> exp.Expr:
    """DuckDB's `/` gives DOUBLE (FLOAT when a FLOAT meets an integer or FLOAT); `//` keeps
    integers integral and gives DOUBLE otherwise."""
    left = node.left.type.this if node.left.type else exp.DType.UNKNOWN
    right = node.right.type.this if node.right.type else exp.DType.UNKNOWN
    numeric = _INTEGERS | _FLOATS | {exp.DType.DECIMAL}
    if left not in numeric or right not in numeric:
        return annotator._set_type(node, exp.DType.UNKNOWN)
    if isinstance(node, exp.IntDiv) and {left, right} <= _INTEGERS:
        annotator._annotate_binary(node)
        return node
    if exp.DType.FLOAT in (left, right) and {left, right} <= _INTEGERS | {exp.DType.FLOAT}:
        return annotator._set_type(node, exp.DType.FLOAT)
    return annotator._set_type(node, exp.DType.DOUBLE)


def _annotate_number(annotator: TypeAnnotator, node: exp.Literal) -> exp.Expr:
    """DuckDB types `1.5` as DECIMAL(2,1) (digits, digits after the point), `1e3` as DOUBLE."""
    text = node.this
    if node.is_string or not re.fullmatch(r"\d*\.\d*", text):
        return annotator._annotate_literal(node)
    digits = len(text.replace(".", ""))
    if digits > 38:
        return annotator._set_type(node, exp.DType.DOUBLE)
    scale = len(text.partition(".")[2])
    return annotator._set_type(node, exp.DataType.build(f"DECIMAL({digits}, {scale})"))


def _annotate_epoch(annotator: TypeAnnotator, node: exp.UnixToTime) -> exp.Expr:
    """`epoch_ms(ts)` gives BIGINT, `epoch_ms(n)` TIMESTAMP, `to_timestamp(n)` TIMESTAMP WITH TZ."""
    argument = node.this.type
    if argument is not None and argument.this in (_TIMESTAMPS | {exp.DType.DATE}):
        return annotator._set_type(node, exp.DType.BIGINT)
    if node.args.get("scale") is None:
        return annotator._set_type(node, exp.DType.TIMESTAMPTZ)
    return annotator._set_type(node, exp.DType.TIMESTAMP)


def _annotate_decimal_unknown(annotator: TypeAnnotator, node: exp.Expr) -> exp.Expr:
    """Rounding keeps a DECIMAL's precision by rules not modelled here: leave it unknown."""
    base = _BASE_TYPES.get(type(node), {}).get("annotator")
    if node.this.is_type(exp.DType.DECIMAL):
        return annotator._set_type(node, exp.DType.UNKNOWN)
    if base is not None:
        return base(annotator, node)
    return annotator._set_type(node, node.this.type)


def _annotate_function(annotator: TypeAnnotator, node: exp.Anonymous) -> exp.Expr:
    if node.name.lower() in ("now", "get_current_timestamp", "transaction_timestamp"):
        return annotator._set_type(node, exp.DType.TIMESTAMPTZ)
    return annotator._set_type(node, exp.DType.UNKNOWN)


def _decimal_mix(types: Sequence[exp.DataType | None]) -> exp.DType | None:
    """The type DuckDB gives values of `types` mixed with a DECIMAL; None when none is one.

    sqlglot keeps a parameterised DECIMAL against DOUBLE, where DuckDB picks DOUBLE; DuckDB's
    widening of DECIMALs against each other and against integers is not modelled: UNKNOWN.
    """
    known = [kind for kind in types if kind is not None and not kind.is_type(exp.DType.NULL)]
    kinds = {kind.this for kind in known}
    if exp.DType.DECIMAL not in kinds:
        return None
    if kinds & _FLOATS:
        return exp.DType.DOUBLE if exp.DType.DOUBLE in kinds else exp.DType.FLOAT
    if all(kind == known[0] for kind in known):
        return None
    return exp.DType.UNKNOWN


def _mixing(operands: Callable[[exp.Expr], list[exp.Expr]]) -> dict[str, Callable[..., exp.Expr]]:
    """An annotator that types a node as sqlglot does, then corrects DECIMAL mixes as DuckDB."""

    def annotate(annotator: TypeAnnotator, node: exp.Expr) -> exp.Expr:
        _BASE_TYPES[type(node)]["annotator"](annotator, node)
        mixed = _decimal_mix([operand.type for operand in operands(node) if operand is not None])
        return node if mixed is None else annotator._set_type(node, mixed)

    return {"annotator": annotate}


_DUCKDB_TYPES = {
    **_BASE_TYPES,
    exp.Sum: {"annotator": _annotate_sum},
    exp.Add: {"annotator": _annotate_arithmetic},
    exp.Sub: {"annotator": _annotate_arithmetic},
    exp.Mul: {"annotator": _annotate_arithmetic},
    exp.Mod: {"annotator": _annotate_arithmetic},
    exp.Div: {"annotator": _annotate_division},
    exp.IntDiv: {"annotator": _annotate_division},
    exp.Literal: {"annotator": _annotate_number},
    exp.UnixToTime: {"annotator": _annotate_epoch},
    exp.Round: {"annotator": _annotate_decimal_unknown},
    exp.CurrentTimestamp: {"returns": exp.DType.TIMESTAMPTZ},
    exp.Anonymous: {"annotator": _annotate_function},
    exp.Coalesce: _mixing(lambda node: [node.this, *node.expressions]),
    exp.Greatest: _mixing(lambda node: [node.this, *node.expressions]),
    exp.Least: _mixing(lambda node: [node.this, *node.expressions]),
    exp.If: _mixing(lambda node: [node.args.get("true"), node.args.get("false")]),
    exp.Case: _mixing(
        lambda node: (
            [branch.args.get("true") for branch in node.args["ifs"]] + [node.args.get("default")]
        )
    ),
}
