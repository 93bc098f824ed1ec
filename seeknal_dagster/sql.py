"""Node SQL: which nodes it reads, its executable and canonical text, and its output columns.

Every function here is pure: SQL text in (DuckDB dialect, analysed with sqlglot), facts out. Nothing
touches a file or a database.
"""

from __future__ import annotations

import bisect
import functools
import re
from collections.abc import Iterator
from typing import NamedTuple

import sqlglot
from sqlglot import exp
from sqlglot.dialects.dialect import Dialect
from sqlglot.errors import ErrorLevel, ParseError, SqlglotError

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
