"""Node files become frozen, typed specs here; every per-file problem is collected, none raised.

A spec holds only what the YAML says (normalised); relations between nodes are checked by
`project.py` and `graph.py`.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from difflib import get_close_matches
from pathlib import PurePosixPath
from typing import Any

from seeknal_dagster.errors import Problem

NAME_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
SUPPORTED_KINDS = ("source", "transform", "feature_group", "exposure", "rule", "profile")
UNSUPPORTED_KINDS = (
    "aggregation",
    "second_order_aggregation",
    "model",
    "semantic_model",
    "metric",
)
SOURCE_FORMATS = ("csv", "parquet", "json", "jsonl")
# Seeknal sources that read through a connection rather than a file: not supported yet.
CONNECTION_SOURCES = (
    "postgresql",
    "postgres",
    "mysql",
    "sqlite",
    "duckdb",
    "iceberg",
    "hive",
    "delta",
    "bigquery",
    "snowflake",
    "starrocks",
    "redshift",
    "mssql",
    "oracle",
    "clickhouse",
    "kafka",
)
EXPORT_FORMATS = ("parquet", "csv", "json")
RULE_TYPES = (
    "null",
    "range",
    "uniqueness",
    "accepted_values",
    "sql_assertion",
    "freshness",
    "profile_check",
)
# What `profile_check` compares: the profile's columns, and the spellings Seeknal also uses.
PROFILE_METRICS = (
    "row_count",
    "null_count",
    "null_percent",
    "distinct_count",
    "min",
    "max",
    "mean",
    "p25",
    "median",
    "p75",
)
_METRIC_ALIASES = {
    "avg": "mean",
    "p50": "median",
    "null_pct": "null_percent",
    "null_percentage": "null_percent",
    "unique_count": "distinct_count",
    "percentile_25": "p25",
    "percentile_75": "p75",
}
_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_COMPARISON = re.compile(rf"^\s*(>=|<=|!=|=|>|<)\s*({_NUMBER})\s*$")
# Decorators of Seeknal's Python pipelines (`@transform(name=...)`) and the kinds they declare.
PYTHON_NODE_DECORATORS = (
    "source",
    "transform",
    "feature_group",
    "second_order_aggregation",
    "aggregation",
    "model",
    "exposure",
    "rule",
    "profile",
    "semantic_model",
    "metric",
)

_COMMON_KEYS = {"kind", "name", "description", "owner", "tags", "inputs", "depends_on"}
_KIND_KEYS = {
    "source": {"source", "table", "params", "schema", "columns"},
    "transform": {"transform", "sql"},
    "feature_group": {"entity", "features", "materialization", "transform", "sql"},
    "exposure": {"type", "path", "format", "params", "transform", "sql"},
    "rule": {"rule"},
    "profile": {"profile"},
}

# Seeknal's type names and the DuckDB type each one means.
_TYPE_ALIASES = {
    "string": "VARCHAR",
    "str": "VARCHAR",
    "text": "VARCHAR",
    "varchar": "VARCHAR",
    "integer": "INTEGER",
    "int": "INTEGER",
    "long": "BIGINT",
    "bigint": "BIGINT",
    "short": "SMALLINT",
    "smallint": "SMALLINT",
    "tinyint": "TINYINT",
    "hugeint": "HUGEINT",
    "ubigint": "UBIGINT",
    "uinteger": "UINTEGER",
    "float": "FLOAT",
    "real": "FLOAT",
    "double": "DOUBLE",
    "boolean": "BOOLEAN",
    "bool": "BOOLEAN",
    "date": "DATE",
    "timestamp": "TIMESTAMP",
    "datetime": "TIMESTAMP",
    "timestamptz": "TIMESTAMPTZ",
    "timestamp_ntz": "TIMESTAMP",
    "time": "TIME",
    "interval": "INTERVAL",
    "blob": "BLOB",
    "uuid": "UUID",
    "json": "JSON",
}
_DECIMAL = re.compile(r"^(?:decimal|numeric)\s*\(\s*(\d+)\s*,\s*(\d+)\s*\)$", re.IGNORECASE)


def duckdb_type(name: object) -> str | None:
    """The DuckDB type for a Seeknal or DuckDB type name, or None when the name is unknown."""
    if not isinstance(name, str):
        return None
    text = name.strip()
    alias = _TYPE_ALIASES.get(text.lower())
    if alias:
        return alias
    match = _DECIMAL.match(text)
    if match:
        precision, scale = int(match.group(1)), int(match.group(2))
        if 1 <= precision <= 38 and scale <= precision:
            return f"DECIMAL({precision},{scale})"
    if text.lower() in ("decimal", "numeric"):
        return "DECIMAL(18,3)"
    return None


@dataclass(frozen=True)
class Column:
    """A declared column: its name, DuckDB type (None = keep as loaded) and description."""

    name: str
    type: str | None
    description: str = ""


@dataclass(frozen=True, kw_only=True)
class NodeSpec:
    """What every node has. `file` is the node file's path relative to the project root."""

    kind: str
    name: str
    file: str
    description: str = ""
    owner: str = ""
    tags: tuple[str, ...] = ()
    inputs: tuple[str, ...] = ()

    @property
    def id(self) -> str:
        return f"{self.kind}.{self.name}"

    @property
    def sql(self) -> str | None:
        return None


@dataclass(frozen=True, kw_only=True)
class CsvOptions:
    """Reader options of a CSV source; None means DuckDB's default."""

    delimiter: str | None = None
    header: bool = True
    quote: str | None = None
    escape: str | None = None
    skip: int = 0
    null_values: tuple[str, ...] = ()
    timestamp_format: str | None = None
    date_format: str | None = None


@dataclass(frozen=True, kw_only=True)
class SourceSpec(NodeSpec):
    format: str
    path: str
    options: CsvOptions = field(default_factory=CsvOptions)
    columns: tuple[Column, ...] = ()


@dataclass(frozen=True, kw_only=True)
class TransformSpec(NodeSpec):
    query: str

    @property
    def sql(self) -> str | None:
        return self.query


@dataclass(frozen=True, kw_only=True)
class FeatureGroupSpec(NodeSpec):
    entity: str
    join_keys: tuple[str, ...]
    event_time_col: str | None = None
    features: tuple[Column, ...] | None = None
    offline: tuple[tuple[str, Any], ...] = ()
    online: tuple[tuple[str, Any], ...] = ()
    query: str | None = None

    @property
    def sql(self) -> str | None:
        return self.query

    def output_names(self, available: Sequence[str]) -> list[str]:
        """The group's output columns: join keys, event time, then the declared features (or,
        with none declared, every other available column). May name columns not available."""
        wanted = list(self.join_keys)
        if self.event_time_col:
            wanted.append(self.event_time_col)
        if self.features is None:
            return wanted + [c for c in available if c not in wanted]
        return wanted + [f.name for f in self.features if f.name not in wanted]

    def joined_names(
        self, columns: Sequence[str], taken: set[str], as_of: bool
    ) -> list[tuple[str, str]]:
        """(column, name in the result) of this group's columns joined onto a training base:
        keys (and, for an as-of join, the event time) are left out; a name the base already
        has gets the group's name as a prefix. `taken` is updated."""
        skip = set(self.join_keys) | ({self.event_time_col} if as_of else set())
        joined = []
        for column in columns:
            if column in skip:
                continue
            name = column if column not in taken else f"{self.name}__{column}"
            taken.add(name)
            joined.append((column, name))
        return joined


@dataclass(frozen=True, kw_only=True)
class ExposureSpec(NodeSpec):
    type: str
    path: str
    format: str
    query: str | None = None

    @property
    def sql(self) -> str | None:
        return self.query


@dataclass(frozen=True)
class RuleCheck:
    """One data-quality check of a rule node."""

    type: str
    columns: tuple[str, ...] = ()
    min: float | None = None
    max: float | None = None
    max_null_percentage: float = 0.0
    values: tuple[Any, ...] = ()
    sql: str | None = None
    max_age: str | None = None
    severity: str = "error"
    metric: str | None = None
    operator: str | None = None
    threshold: float | None = None


@dataclass(frozen=True, kw_only=True)
class RuleSpec(NodeSpec):
    checks: tuple[RuleCheck, ...]

    @property
    def target(self) -> str:
        return self.inputs[0]


@dataclass(frozen=True, kw_only=True)
class ProfileSpec(NodeSpec):
    """Column statistics of its one input; `selected_columns` None means every column."""

    selected_columns: tuple[str, ...] | None = None

    @property
    def target(self) -> str:
        return self.inputs[0]


@dataclass(frozen=True, kw_only=True)
class UnsupportedSpec(NodeSpec):
    """A Seeknal node this product does not run yet; reported once, never executed.

    `what` names it in messages: the kind, or what else makes it unsupported (`postgresql
    source`, `Python transform`).
    """

    label: str = ""

    @property
    def what(self) -> str:
        return self.label or self.kind


class _Collector:
    """Gathers the problems of one file."""

    def __init__(self, file: str):
        self.file = file
        self.problems: list[Problem] = []
        self.warnings: list[str] = []

    def add(self, key: str, message: str, fix: str = "") -> None:
        self.problems.append(Problem(self.file, key, message, fix))


def parse_node(data: object, file: str) -> tuple[NodeSpec | None, list[Problem], list[str]]:
    """Turns one parsed node file into a spec.

    Args:
        data: the YAML document of the file.
        file: the file's path relative to the project root, used in every message.

    Returns:
        The spec (None when the file is unusable), the problems found and warnings.
    """
    out = _Collector(file)
    warnings: list[str] = []
    if not isinstance(data, Mapping):
        found = "an empty file" if data is None else f"a {type(data).__name__}"
        out.add(
            "",
            f"a node file must hold one mapping (kind, name, ...), found {found}",
            "write the node as `kind: ...` / `name: ...` keys at the top level",
        )
        return None, out.problems, warnings

    kind = data.get("kind")
    name = data.get("name")
    if kind is None:
        out.add("kind", "required key is missing", f"add `kind:` ({', '.join(SUPPORTED_KINDS)})")
    elif not isinstance(kind, str) or kind not in SUPPORTED_KINDS + UNSUPPORTED_KINDS:
        out.add(
            "kind",
            f"unknown kind {kind!r}",
            f"use one of {', '.join(SUPPORTED_KINDS)}{did_you_mean(kind, SUPPORTED_KINDS)}",
        )
    if name is None:
        out.add("name", "required key is missing", "add `name: <identifier>`")
    elif not isinstance(name, str):
        out.add(
            "name",
            f"invalid name {name!r}: expected text, found {type(name).__name__}",
            "write the name as an identifier such as `name: daily_orders`",
        )
    elif not NAME_PATTERN.match(name):
        out.add(
            "name",
            f"invalid name {name!r}",
            "use letters, digits and underscores, not starting with a digit",
        )
    if out.problems:
        return None, out.problems, warnings

    common = _common_fields(data, out)
    if kind in UNSUPPORTED_KINDS:
        return UnsupportedSpec(kind=kind, name=name, file=file, **common), out.problems, warnings
    connection = data.get("source") if kind == "source" else None
    if isinstance(connection, str) and connection.lower() in CONNECTION_SOURCES:
        spec = UnsupportedSpec(
            kind=kind, name=name, file=file, label=f"{connection} source", **common
        )
        return spec, out.problems, warnings

    allowed = _COMMON_KEYS | _KIND_KEYS[kind]
    unknown = sorted(str(k) for k in data if k not in allowed)
    if unknown:
        described = ", ".join(f"{k}{did_you_mean(k, sorted(allowed))}" for k in unknown)
        warnings.append(f"{file}: unknown key(s) ignored for a {kind}: {described}")
    builder = _BUILDERS[kind]
    spec = builder(data, out, kind=kind, name=name, file=file, **common)
    problems = [_point_at_misspelt_key(p, unknown) for p in out.problems]
    return (spec if not problems else None), problems, warnings + out.warnings


def parse_python_file(text: str, file: str) -> tuple[list[UnsupportedSpec], list[str]]:
    """The nodes a Seeknal Python pipeline file declares, found by reading it, never running it.

    A node is a function decorated with `@transform(name=...)` (or `@source`, `@feature_group`,
    ...); its name is the decorator's `name`, else the function's. Python pipelines are not
    supported yet, so each node becomes an `UnsupportedSpec`.

    Returns:
        The nodes, and a warning when the file declares none that could be recognised.
    """
    try:
        tree = ast.parse(text, filename=file)
    except SyntaxError as error:
        return [], [
            f"{file}: not supported yet: Python pipeline file (skipped; it does not parse at "
            f"line {error.lineno})"
        ]
    specs: list[UnsupportedSpec] = []
    for function in ast.walk(tree):
        if not isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for decorator in function.decorator_list:
            call = decorator if isinstance(decorator, ast.Call) else None
            target = call.func if call is not None else decorator
            kind = getattr(target, "id", None) or getattr(target, "attr", None)
            if kind not in PYTHON_NODE_DECORATORS:
                continue
            arguments = {k.arg: k.value for k in call.keywords} if call is not None else {}
            name = _constant_text(arguments.get("name")) or function.name
            inputs = arguments.get("inputs")
            refs = [_constant_text(e) for e in getattr(inputs, "elts", [])]
            specs.append(
                UnsupportedSpec(
                    kind=kind,
                    name=name,
                    file=file,
                    inputs=tuple(r for r in refs if r and r.count(".") == 1),
                    label=f"Python {kind}",
                )
            )
    if specs:
        return specs, []
    return [], [
        f"{file}: not supported yet: Python pipeline file; no `@transform`/`@source`/... "
        "node found in it (skipped)"
    ]


def _constant_text(node: ast.expr | None) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.strip():
        return node.value.strip()
    return None


def _point_at_misspelt_key(problem: Problem, unknown: list[str]) -> Problem:
    """A problem with a key the file spells wrongly (`tranform:`) says so in its fix."""
    close = get_close_matches(problem.key, unknown, n=1) if problem.key else []
    if not close:
        return problem
    return replace(problem, fix=f"rename `{close[0]}:` to `{problem.key}:`")


def _common_fields(data: Mapping[str, Any], out: _Collector) -> dict[str, Any]:
    description = _text(data, "description", out)
    owner = _text(data, "owner", out)
    tags = data.get("tags") or []
    if isinstance(tags, str):
        tags = [tags]
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        out.add("tags", "tags must be a list of strings", "write `tags: [a, b]`")
        tags = []
    return {
        "description": description,
        "owner": owner,
        "tags": tuple(tags),
        "inputs": _inputs(data, out),
    }


def _text(data: Mapping[str, Any], key: str, out: _Collector) -> str:
    value = data.get(key)
    if value is None:
        return ""
    if isinstance(value, (str, int, float)) and not isinstance(value, bool):
        return str(value)
    out.add(key, f"expected text, found {type(value).__name__}", f"write `{key}:` as plain text")
    return ""


def _inputs(data: Mapping[str, Any], out: _Collector) -> tuple[str, ...]:
    key = "inputs" if "inputs" in data else "depends_on"
    raw = data.get(key)
    if raw is None:
        return ()
    if not isinstance(raw, list):
        out.add(
            key,
            f"expected a list of `- ref: kind.name`, found {type(raw).__name__}",
            "write each input as `- ref: source.my_table`",
        )
        return ()
    refs: list[str] = []
    for index, item in enumerate(raw):
        ref = item.get("ref") if isinstance(item, Mapping) else item
        if not isinstance(ref, str) or ref.count(".") != 1:
            out.add(
                f"{key}[{index}]",
                f"expected `ref: kind.name`, found {item!r}",
                "write the input as `- ref: source.my_table`",
            )
            continue
        if ref not in refs:
            refs.append(ref.strip())
    return tuple(refs)


def _query(data: Mapping[str, Any], out: _Collector, required: bool) -> str | None:
    key = "transform" if "transform" in data else "sql"
    value = data.get(key)
    if value is None:
        if required:
            out.add("transform", "required key is missing", "add `transform: |` with a SQL query")
        return None
    if not isinstance(value, str) or not value.strip():
        out.add(key, "expected SQL text", f"write `{key}: |` followed by the query")
        return None
    return value.replace("\r\n", "\n")


def _columns(value: object, key: str, out: _Collector) -> tuple[Column, ...]:
    """Reads `columns:` (mapping) or `schema:` (list of {name, data_type})."""
    columns: list[Column] = []
    if isinstance(value, Mapping):
        items = list(value.items())
    elif isinstance(value, list):
        items = []
        for index, entry in enumerate(value):
            if not isinstance(entry, Mapping) or not isinstance(entry.get("name"), str):
                out.add(
                    f"{key}[{index}]",
                    f"expected `{{name, data_type}}`, found {entry!r}",
                    "write `- {name: amount, data_type: double}`",
                )
                continue
            items.append((entry["name"], entry))
    else:
        out.add(
            key,
            f"expected a mapping of column -> type, found {type(value).__name__}",
            "write `columns:` with one `name: type` line per column",
        )
        return ()

    for name, spec in items:
        description = ""
        type_name: object = None
        if isinstance(spec, Mapping):
            type_name = spec.get("type", spec.get("dtype", spec.get("data_type")))
            description = str(spec.get("description") or "")
        elif isinstance(spec, str) and duckdb_type(spec):
            type_name = spec
        elif spec is not None:
            # A bare text value is a description only (Seeknal allows `order_id: "Order id"`).
            description = str(spec)
        duck = None
        if type_name is not None:
            duck = duckdb_type(type_name)
            if duck is None:
                out.add(
                    f"{key}.{name}",
                    f"unknown type {type_name!r}",
                    "use string, integer, long, float, double, boolean, date, timestamp, "
                    "decimal(p,s) or a DuckDB type name",
                )
        columns.append(Column(str(name), duck, description))
    return tuple(columns)


_SOURCE_PARAMS = (
    "delimiter",
    "delim",
    "header",
    "quote",
    "escape",
    "skip",
    "null_values",
    "timestamp_format",
    "date_format",
    "path",
)


def _source(data: Mapping[str, Any], out: _Collector, **common: Any) -> SourceSpec | None:
    params = data.get("params") or {}
    if not isinstance(params, Mapping):
        out.add(
            "params",
            f"expected a mapping, found {type(params).__name__}",
            "write `params:` as key: value lines",
        )
        params = {}
    unknown = sorted(str(k) for k in params if k not in _SOURCE_PARAMS)
    if unknown:
        described = ", ".join(f"{k}{did_you_mean(k, _SOURCE_PARAMS)}" for k in unknown)
        out.warnings.append(f"{out.file}: unknown key(s) under params ignored: {described}")
    fmt = data.get("source")
    if fmt is None:
        out.add("source", "required key is missing", f"add `source:` ({', '.join(SOURCE_FORMATS)})")
    elif fmt not in SOURCE_FORMATS:
        out.add(
            "source",
            f"unknown source type {fmt!r}{did_you_mean(fmt, SOURCE_FORMATS)}",
            f"use one of {', '.join(SOURCE_FORMATS)} for a file (a connection such as "
            f"{', '.join(CONNECTION_SOURCES[:3])}, ... is reported as not supported yet)",
        )
    path = data.get("table", params.get("path"))
    if not isinstance(path, str) or not path.strip():
        out.add(
            "table",
            "required key is missing: the data file's path",
            "add `table: data/file.csv` (relative to the project root)",
        )
        path = ""
    columns: tuple[Column, ...] = ()
    if data.get("columns") is not None:
        columns = _columns(data["columns"], "columns", out)
    elif data.get("schema") is not None:
        columns = _columns(data["schema"], "schema", out)
    return SourceSpec(
        format=str(fmt), path=path, options=_csv_options(params, out), columns=columns, **common
    )


def _csv_options(params: Mapping[str, Any], out: _Collector) -> CsvOptions:
    header = params.get("header", True)
    if not isinstance(header, bool):
        out.add(
            "params.header",
            f"expected true or false, found {header!r}",
            "write `header: true` or `header: false`",
        )
        header = True
    skip = params.get("skip", 0)
    if not isinstance(skip, int) or isinstance(skip, bool) or skip < 0:
        out.add(
            "params.skip", f"expected a whole number of lines, found {skip!r}", "write `skip: 0`"
        )
        skip = 0
    nulls = params.get("null_values", ())
    if isinstance(nulls, str):
        nulls = (nulls,)
    if not isinstance(nulls, (list, tuple)):
        out.add("params.null_values", "expected a list of strings", 'write `null_values: ["", NA]`')
        nulls = ()
    delimiter = params.get("delimiter", params.get("delim"))
    texts = {}
    for key, value in (
        ("delimiter", delimiter),
        ("quote", params.get("quote")),
        ("escape", params.get("escape")),
        ("timestamp_format", params.get("timestamp_format")),
        ("date_format", params.get("date_format")),
    ):
        if value is not None and not isinstance(value, str):
            out.add(f"params.{key}", f"expected text, found {value!r}", f'quote it: `{key}: "..."`')
            value = None
        texts[key] = value
    return CsvOptions(header=header, skip=skip, null_values=tuple(str(n) for n in nulls), **texts)


def _transform(data: Mapping[str, Any], out: _Collector, **common: Any) -> TransformSpec:
    return TransformSpec(query=_query(data, out, required=True) or "", **common)


def _feature_group(data: Mapping[str, Any], out: _Collector, **common: Any) -> FeatureGroupSpec:
    entity_raw = data.get("entity")
    entity, join_keys = "", ()
    if isinstance(entity_raw, str) and NAME_PATTERN.match(entity_raw):
        entity, join_keys = entity_raw, (f"{entity_raw}_id",)
    elif isinstance(entity_raw, Mapping):
        entity = str(entity_raw.get("name") or "")
        keys = entity_raw.get("join_keys")
        if isinstance(keys, str):
            keys = [keys]
        if not isinstance(keys, list) or not keys or not all(isinstance(k, str) for k in keys):
            out.add(
                "entity.join_keys",
                "expected a non-empty list of column names",
                "write `join_keys: [customer_id]`",
            )
        else:
            join_keys = tuple(keys)
        if not entity:
            entity = join_keys[0] if join_keys else ""
    else:
        out.add(
            "entity",
            "required: the entity and its join keys",
            "add `entity: {name: customer, join_keys: [customer_id]}`",
        )

    materialization = data.get("materialization") or {}
    if not isinstance(materialization, Mapping):
        out.add("materialization", "expected a mapping", "write `materialization:` as key: value")
        materialization = {}
    event_time = materialization.get("event_time_col")
    if event_time is not None and not isinstance(event_time, str):
        out.add("materialization.event_time_col", "expected a column name", "quote the name")
        event_time = None

    features: tuple[Column, ...] | None = None
    raw_features = data.get("features")
    if raw_features is not None:
        if isinstance(raw_features, list) and all(isinstance(f, str) for f in raw_features):
            raw_features = {f: None for f in raw_features}
        features = _columns(raw_features, "features", out)
    return FeatureGroupSpec(
        entity=entity,
        join_keys=join_keys,
        event_time_col=event_time,
        features=features,
        offline=_frozen_section(materialization.get("offline")),
        online=_frozen_section(materialization.get("online")),
        query=_query(data, out, required=False),
        **common,
    )


def _frozen_section(value: object) -> tuple[tuple[str, Any], ...]:
    if not isinstance(value, Mapping):
        return ()
    return tuple(sorted((str(k), v) for k, v in value.items() if not isinstance(v, (dict, list))))


def _exposure(data: Mapping[str, Any], out: _Collector, **common: Any) -> ExposureSpec:
    params = data.get("params") or {}
    if not isinstance(params, Mapping):
        params = {}
    exposure_type = data.get("type", "file")
    if exposure_type != "file":
        out.add(
            "type",
            f"not supported yet: exposure type {exposure_type!r}",
            "use `type: file`; other exposure types are not supported yet",
        )
    path = data.get("path", params.get("path"))
    if not isinstance(path, str) or not path.strip():
        out.add(
            "path",
            "required key is missing: where to write the file",
            "add `path: output/name.parquet` (relative to the project root)",
        )
        path = ""
    fmt = data.get("format", params.get("format"))
    choices = ", ".join(EXPORT_FORMATS)
    if fmt is None and path:
        fmt = PurePosixPath(path).suffix.lower().lstrip(".")
        if fmt not in EXPORT_FORMATS:
            out.add(
                "format",
                f"no format given and the extension of {path!r} is not one of {choices}",
                f"set `format:` to one of {choices}",
            )
    elif fmt is not None and fmt not in EXPORT_FORMATS:
        out.add(
            "format", f"unsupported export format {fmt!r}", f"set `format:` to one of {choices}"
        )
    fmt = fmt if fmt in EXPORT_FORMATS else "parquet"
    if not common["inputs"]:
        out.add("inputs", "an exposure needs at least one input", "add `inputs: [{ref: ...}]`")
    return ExposureSpec(
        type=str(exposure_type), path=path, format=fmt, query=_query(data, out, False), **common
    )


def _rule(data: Mapping[str, Any], out: _Collector, **common: Any) -> RuleSpec:
    raw = data.get("rule")
    entries = raw if isinstance(raw, list) else [raw]
    checks: list[RuleCheck] = []
    if raw is None:
        out.add("rule", "required key is missing", "add `rule: {type: null, columns: [...]}`")
        entries = []
    for index, entry in enumerate(entries):
        key = "rule" if not isinstance(raw, list) else f"rule[{index}]"
        if not isinstance(entry, Mapping):
            out.add(
                key,
                f"expected a mapping with `type:`, found {entry!r}",
                f"write `type:` ({', '.join(RULE_TYPES)})",
            )
            continue
        if entry.get("type") == "profile_check":
            checks.extend(_profile_checks(entry, key, out))
            continue
        check = _rule_check(entry, key, out)
        if check:
            checks.append(check)
    if len(common["inputs"]) != 1:
        out.add(
            "inputs",
            f"a rule checks exactly one node, found {len(common['inputs'])} inputs",
            "list the checked node as the only input: `inputs: [{ref: source.x}]`",
        )
    return RuleSpec(checks=tuple(checks), **common)


def _rule_check(entry: Mapping[str, Any], key: str, out: _Collector) -> RuleCheck | None:
    # NOTE: `type: null` is the null check, not a missing type.
    rule_type = "null" if "type" in entry and entry["type"] is None else entry.get("type")
    if rule_type not in RULE_TYPES:
        out.add(
            f"{key}.type",
            f"unknown rule type {rule_type!r}",
            f"use one of {', '.join(RULE_TYPES)}{did_you_mean(rule_type, RULE_TYPES)}",
        )
        return None
    params = entry.get("params") or {}
    if not isinstance(params, Mapping):
        out.add(f"{key}.params", "expected a mapping", "write `params:` as key: value lines")
        return None
    severity = params.get("severity", entry.get("severity", "error"))
    if severity not in ("error", "warn"):
        out.add(
            f"{key}.params.severity",
            f"expected error or warn, found {severity!r}",
            "write `severity: error` or `severity: warn`",
        )
        severity = "error"
    columns = entry.get("columns", entry.get("column", params.get("columns", params.get("column"))))
    if isinstance(columns, str):
        columns = [columns]
    columns = tuple(str(c) for c in columns) if isinstance(columns, list) else ()

    number = {}
    for name in ("min", "max", "max_null_percentage"):
        value = params.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            try:
                value = float(value)
            except (TypeError, ValueError):
                out.add(
                    f"{key}.params.{name}",
                    f"expected a number, found {value!r}",
                    f"write `{name}: 10`",
                )
                value = None
        number[name] = value

    needs_columns = rule_type in ("null", "range", "uniqueness", "accepted_values", "freshness")
    if needs_columns and not columns:
        out.add(
            f"{key}.columns",
            f"a {rule_type} rule needs the column(s) to check",
            "add `columns: [name]` (or `column: name`)",
        )
    if rule_type == "range" and number["min"] is None and number["max"] is None:
        out.add(f"{key}.params", "a range rule needs `min` and/or `max`", "add `params: {min: 0}`")
    values = params.get("values", entry.get("values"))
    if rule_type == "accepted_values" and not isinstance(values, list):
        out.add(
            f"{key}.params.values",
            "an accepted_values rule needs a list of values",
            "add `params: {values: [a, b]}`",
        )
    sql = params.get("sql", entry.get("sql"))
    if rule_type == "sql_assertion" and not isinstance(sql, str):
        out.add(
            f"{key}.params.sql",
            "a sql_assertion rule needs a query returning offending rows",
            "add `params: {sql: SELECT ... WHERE <bad>}`",
        )
    max_age = params.get("max_age")
    if rule_type == "freshness" and not isinstance(max_age, str):
        out.add(
            f"{key}.params.max_age",
            "a freshness rule needs `max_age` (e.g. '24 hours')",
            "add `params: {max_age: 24 hours}`",
        )
    return RuleCheck(
        type=rule_type,
        columns=columns,
        min=number["min"],
        max=number["max"],
        max_null_percentage=number["max_null_percentage"] or 0.0,
        values=tuple(values) if isinstance(values, list) else (),
        sql=sql if isinstance(sql, str) else None,
        max_age=max_age if isinstance(max_age, str) else None,
        severity=severity,
    )


def _profile_checks(entry: Mapping[str, Any], key: str, out: _Collector) -> list[RuleCheck]:
    """A `profile_check` entry: one check per (metric, level), `warn` as warn, `fail` as error."""
    params = entry.get("params") if isinstance(entry.get("params"), Mapping) else {}
    raw = entry.get("checks", params.get("checks"))
    if not isinstance(raw, list) or not raw:
        out.add(
            f"{key}.checks",
            "a profile_check rule needs a list of checks",
            'add `checks: [{metric: row_count, fail: "= 0"}]`',
        )
        return []
    result: list[RuleCheck] = []
    for index, item in enumerate(raw):
        where = f"{key}.checks[{index}]"
        if not isinstance(item, Mapping):
            out.add(where, f"expected a mapping, found {item!r}", "write `- {metric: ..., ...}`")
            continue
        metric = item.get("metric")
        metric = _METRIC_ALIASES.get(metric, metric) if isinstance(metric, str) else metric
        if metric not in PROFILE_METRICS:
            out.add(
                f"{where}.metric",
                f"unknown profile metric {metric!r}{did_you_mean(metric, PROFILE_METRICS)}",
                f"use one of {', '.join(PROFILE_METRICS)}",
            )
            continue
        column = item.get("column")
        if column is not None and not isinstance(column, str):
            out.add(f"{where}.column", f"expected a column name, found {column!r}", "quote it")
            continue
        if column is None and metric != "row_count":
            out.add(
                f"{where}.column",
                f"the metric {metric} is per column",
                "add `column:` naming the profiled column",
            )
            continue
        levels = (("warn", "warn"), ("fail", "error"))
        given = [(level, severity) for level, severity in levels if item.get(level) is not None]
        if not given:
            out.add(where, "a check needs `warn:` and/or `fail:`", 'add `fail: "> 10"`')
        for level, severity in given:
            comparison = _COMPARISON.match(item[level]) if isinstance(item[level], str) else None
            if comparison is None:
                out.add(
                    f"{where}.{level}",
                    f"expected a comparison with a number such as '> 50', found {item[level]!r}",
                    f'write one of >, >=, <, <=, =, != and a number, quoted: `{level}: "> 50"`',
                )
                continue
            result.append(
                RuleCheck(
                    type="profile_check",
                    columns=(column,) if column else (),
                    severity=severity,
                    metric=metric,
                    operator=comparison.group(1),
                    threshold=float(comparison.group(2)),
                )
            )
    return result


def _profile(data: Mapping[str, Any], out: _Collector, **common: Any) -> ProfileSpec:
    section = data.get("profile") or {}
    if not isinstance(section, Mapping):
        out.add("profile", "expected a mapping", "write `profile: {columns: [a, b]}`")
        section = {}
    columns = section.get("columns")
    if columns is not None and (
        not isinstance(columns, list) or not all(isinstance(c, str) and c for c in columns)
    ):
        out.add(
            "profile.columns",
            f"expected a list of column names, found {columns!r}",
            "write `columns: [price, quantity]`, or remove it to profile every column",
        )
        columns = None
    ignored = sorted(str(k) for k in section if k != "columns")
    if ignored:
        out.warnings.append(
            f"{out.file}: profile.{', profile.'.join(ignored)} ignored: a profile computes row "
            "count, nulls, distinct count, min, max, mean and quartiles (top values are not "
            "supported yet)"
        )
    if len(common["inputs"]) != 1:
        out.add(
            "inputs",
            f"a profile describes exactly one node, found {len(common['inputs'])} inputs",
            "list the profiled node as the only input: `inputs: [{ref: source.x}]`",
        )
    return ProfileSpec(selected_columns=tuple(columns) if columns else None, **common)


def did_you_mean(value: object, choices: tuple[str, ...] | list[str]) -> str:
    """` (did you mean 'x'?)` naming the choice closest to `value`, or "" when none is close."""
    if not isinstance(value, str):
        return ""
    close = get_close_matches(value, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


_BUILDERS = {
    "source": _source,
    "transform": _transform,
    "feature_group": _feature_group,
    "exposure": _exposure,
    "rule": _rule,
    "profile": _profile,
}
