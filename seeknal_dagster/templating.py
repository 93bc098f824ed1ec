"""`{{ ... }}` parameters in node files, resolved after YAML parsing, before specs are built.

Resolution walks the string values of a parsed node (never its keys), so YAML line numbers stay
right and a value containing quotes cannot break the YAML. Names a placeholder may use:

- `{{ today }}`, `{{ yesterday }}`: ISO dates of the machine's clock; `{{ run_date }}`: the
  `--date` given to the CLI, else today. These three names are reserved.
- `{{ env:VAR }}` / `{{ env:VAR|default }}`: an environment variable (its default when unset).
- `--params '{"key": "value"}'` on the CLI: `{{ key }}`; a nested object gives dotted names
  (`{"orders": {"dateCol": "d"}}` -> `{{ orders.dateCol }}`) and overrides the common files.
- `seeknal/common/sources.yml`: `sources: [{id, ref, params: {name: value}}]` gives
  `{{ id.name }}` for each param and `{{ id.ref }}` for the ref.
- `seeknal/common/rules.yml`: `rules: [{id, value}]` gives `{{ rules.id }}` (a SQL condition).
- `seeknal/common/transformations.yml`: `transformations: [{id, sql}]` gives
  `{{ transforms.id }}` (a SQL snippet).

The common files may also end in `.yaml`. A value may itself hold placeholders; they are resolved
in turn. A placeholder that names nothing known is a problem naming the file, the key and the
name; it is never left in the text that runs. A string value that is exactly one placeholder takes
the type its text reads as (`"{{ n }}"` with n = 5 is the number 5), as YAML would have.

The CLI exports the parameters and dates in `SEEKNAL_PARAMS`, `SEEKNAL_RUN_DATE` and
`SEEKNAL_TODAY`, so that Dagster's step processes, which load the project again, resolve every
node to the same text and so to the same fingerprint.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from difflib import get_close_matches
from pathlib import Path
from typing import Any

from seeknal_dagster.errors import Problem, ProjectError
from seeknal_dagster.yaml_io import YamlFileError, load_yaml_file

PARAMS_ENV = "SEEKNAL_PARAMS"
RUN_DATE_ENV = "SEEKNAL_RUN_DATE"
TODAY_ENV = "SEEKNAL_TODAY"
RESERVED = ("today", "yesterday", "run_date")
COMMON_FOLDER = "seeknal/common"

_PLACEHOLDER = re.compile(r"\{\{\s*(.*?)\s*\}\}")
_MAX_DEPTH = 10
_INT = re.compile(r"^[-+]?(?:0|[1-9][0-9]*)$")
_FLOAT = re.compile(r"^[-+]?(?:0|[1-9][0-9]*)\.[0-9]+$")

# Each common file: (stem, list key, field holding the value, name prefix or None for `id.`).
_COMMON_FILES = (
    ("sources", "sources", "params", None),
    ("rules", "rules", "value", "rules"),
    ("transformations", "transformations", "sql", "transforms"),
)


@dataclass(frozen=True)
class Parameters:
    """Every name a placeholder can use, with its text, and where each name comes from."""

    values: Mapping[str, str]
    origins: Mapping[str, str]

    def lookup(self, expression: str) -> str | None:
        """The text of `expression` (a name or `env:VAR|default`), None when it names nothing."""
        if expression.startswith("env:"):
            name, _, default = expression[4:].partition("|")
            value = os.environ.get(name.strip())
            if value is not None:
                return value
            return default.strip() if "|" in expression else None
        return self.values.get(expression)


def parse_cli_params(text: str) -> dict[str, str]:
    """The `--params` JSON object as flat dotted names -> text.

    Raises:
        ValueError: the text is not a JSON object of scalars and objects.
    """
    try:
        document = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"not valid JSON ({error.msg} at character {error.pos})") from None
    if not isinstance(document, dict):
        raise ValueError(f"expected a JSON object, found {type(document).__name__}")
    flat: dict[str, str] = {}
    _flatten(document, "", flat)
    reserved = sorted(set(flat) & set(RESERVED))
    if reserved:
        raise ValueError(
            f"{', '.join(reserved)} cannot be set with --params; use --date YYYY-MM-DD for the "
            "run date"
        )
    return flat


def _flatten(value: object, prefix: str, flat: dict[str, str]) -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            _flatten(item, f"{prefix}{key}.", flat)
        return
    name = prefix[:-1]
    if isinstance(value, list) or value is None:
        raise ValueError(f"parameter {name!r}: expected text, a number or true/false")
    flat[name] = _text(value)


def _text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def parse_run_date(text: str) -> date:
    """A `--date` value.

    Raises:
        ValueError: the text is not an ISO date (YYYY-MM-DD).
    """
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"expected a date as YYYY-MM-DD, found {text!r}") from None


def export_to_environment(params: Mapping[str, str], run_date: date, today: date) -> None:
    """Hands the parameters and dates to processes started from this one (Dagster's steps)."""
    os.environ[PARAMS_ENV] = json.dumps(dict(params), sort_keys=True)
    os.environ[RUN_DATE_ENV] = run_date.isoformat()
    os.environ[TODAY_ENV] = today.isoformat()


def from_environment() -> tuple[dict[str, str], date | None, date | None]:
    """The parameters and dates a parent process exported (empty / None when it did not).

    Raises:
        ProjectError: an exported value does not read back.
    """
    try:
        params = parse_cli_params(os.environ[PARAMS_ENV]) if os.environ.get(PARAMS_ENV) else {}
        run_date = os.environ.get(RUN_DATE_ENV)
        today = os.environ.get(TODAY_ENV)
        return (
            params,
            parse_run_date(run_date) if run_date else None,
            parse_run_date(today) if today else None,
        )
    except ValueError as error:
        raise ProjectError(
            [
                Problem(
                    "(environment)",
                    PARAMS_ENV,
                    f"invalid parameters from the environment: {error}",
                    f"unset {PARAMS_ENV}, {RUN_DATE_ENV} and {TODAY_ENV}, or pass --params/--date",
                )
            ]
        ) from None


def load_parameters(
    root: Path,
    problems: list[Problem],
    params: Mapping[str, str] | None = None,
    run_date: date | None = None,
    today: date | None = None,
) -> Parameters:
    """The names available to placeholders in the project at `root`.

    Args:
        root: the project root (common files are read from `seeknal/common/`).
        problems: receives the problems of the common files.
        params: `--params`, flattened; overrides the common files.
        run_date: `--date`; default `today`.
        today: the day `today` means; default the machine's clock.
    """
    today = today or date.today()
    values: dict[str, str] = {}
    origins: dict[str, str] = {}
    for stem, list_key, field, prefix in _COMMON_FILES:
        path = _common_file(root, stem)
        if path is None:
            continue
        label = path.relative_to(root).as_posix()
        for name, value in _read_common(path, label, list_key, field, prefix, problems):
            values[name] = value
            origins[name] = label
    for name, value in (params or {}).items():
        values[name] = value
        origins[name] = "--params"
    builtins = {
        "today": today.isoformat(),
        "yesterday": (today - timedelta(days=1)).isoformat(),
        "run_date": (run_date or today).isoformat(),
    }
    for name, value in builtins.items():
        values[name] = value
        origins[name] = "built-in"
    return Parameters(values, origins)


def _common_file(root: Path, stem: str) -> Path | None:
    for suffix in (".yml", ".yaml"):
        path = root / COMMON_FOLDER / f"{stem}{suffix}"
        if path.is_file():
            return path
    return None


def _read_common(
    path: Path,
    label: str,
    list_key: str,
    field: str,
    prefix: str | None,
    problems: list[Problem],
) -> list[tuple[str, str]]:
    """(name, text) pairs one common file defines; its problems go to `problems`."""
    example = {
        "sources": "sources:\n  - {id: orders, ref: source.orders, params: {dateCol: order_date}}",
        "rules": "rules:\n  - {id: completed, value: \"status = 'completed'\"}",
        "transformations": "transformations:\n  - {id: recent, sql: 'WHERE d > 0'}",
    }[list_key]
    try:
        document = load_yaml_file(path, label)
    except YamlFileError as error:
        problems.append(error.problem)
        return []
    if document is None:
        return []
    entries = document.get(list_key) if isinstance(document, Mapping) else None
    if not isinstance(entries, list):
        problems.append(
            Problem(label, list_key, f"expected a list under `{list_key}:`", f"write {example}")
        )
        return []

    found: list[tuple[str, str]] = []
    seen: set[str] = set()
    for index, entry in enumerate(entries):
        key = f"{list_key}[{index}]"
        ident = entry.get("id") if isinstance(entry, Mapping) else None
        if not isinstance(ident, str) or not ident.strip():
            problems.append(Problem(label, f"{key}.id", "every entry needs an `id`", example))
            continue
        ident = ident.strip()
        if ident in seen:
            problems.append(
                Problem(label, f"{key}.id", f"id {ident!r} is defined twice", "keep one of them")
            )
            continue
        seen.add(ident)
        value = entry.get(field)
        if prefix is not None:
            if not isinstance(value, (str, int, float)) or isinstance(value, bool):
                problems.append(
                    Problem(
                        label,
                        f"{key}.{field}",
                        f"expected text under `{field}:`, found {value!r}",
                        f"write {example}",
                    )
                )
                continue
            found.append((f"{prefix}.{ident}", str(value).strip()))
            continue
        found.extend(_source_entry(label, key, ident, entry, problems))
    return found


def _source_entry(
    label: str, key: str, ident: str, entry: Mapping[str, Any], problems: list[Problem]
) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    ref = entry.get("ref")
    if ref is not None:
        found.append((f"{ident}.ref", str(ref)))
    params = entry.get("params") or {}
    if not isinstance(params, Mapping):
        problems.append(
            Problem(label, f"{key}.params", "expected a mapping", "write `params: {dateCol: d}`")
        )
        return found
    for name, value in params.items():
        if isinstance(value, (dict, list)) or value is None:
            problems.append(
                Problem(
                    label,
                    f"{key}.params.{name}",
                    f"expected text, found {value!r}",
                    "write the value as text",
                )
            )
            continue
        found.append((f"{ident}.{name}", _text(value)))
    return found


def resolve(data: object, file: str, parameters: Parameters) -> tuple[object, list[Problem]]:
    """`data` with every placeholder in its string values replaced.

    Args:
        data: a parsed node file.
        file: the file's path relative to the project root, for messages.
        parameters: the names available.

    Returns:
        The resolved document (unresolvable placeholders are left as written) and one problem
        per unresolvable placeholder, naming the key where it is.
    """
    problems: list[Problem] = []
    return _walk(data, "", file, parameters, problems), problems


def _walk(value: object, key: str, file: str, parameters: Parameters, out: list[Problem]) -> Any:
    if isinstance(value, dict):
        return {
            k: _walk(v, f"{key}.{k}" if key else str(k), file, parameters, out)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_walk(v, f"{key}[{i}]", file, parameters, out) for i, v in enumerate(value)]
    if not isinstance(value, str) or "{{" not in value:
        return value
    whole = _PLACEHOLDER.fullmatch(value.strip()) is not None
    text = _substitute(value, key, file, parameters, out, depth=0)
    typed = _typed(text.strip()) if whole else text
    return text if isinstance(typed, str) else typed


def _substitute(
    text: str, key: str, file: str, parameters: Parameters, out: list[Problem], depth: int
) -> str:
    def replace(match: re.Match[str]) -> str:
        expression = match.group(1)
        value = parameters.lookup(expression)
        if value is None:
            out.append(_unknown(expression, key, file, parameters))
            return match.group(0)
        if "{{" in value:
            if depth >= _MAX_DEPTH:
                out.append(
                    Problem(
                        file,
                        key,
                        f"parameter {{{{ {expression} }}}} refers to itself through other "
                        "parameters",
                        "break the loop in the parameters' definitions",
                    )
                )
                return match.group(0)
            return _substitute(value, key, file, parameters, out, depth + 1)
        return value

    return _PLACEHOLDER.sub(replace, text)


def _unknown(expression: str, key: str, file: str, parameters: Parameters) -> Problem:
    if expression.startswith("env:"):
        name = expression[4:].partition("|")[0].strip()
        return Problem(
            file,
            key,
            f"environment variable {name} in {{{{ {expression} }}}} is not set",
            f"set {name}, or give a default: {{{{ env:{name}|value }}}}",
        )
    close = get_close_matches(expression, list(parameters.values), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    if expression.startswith("rules."):
        fix = f"add `- {{id: {expression[6:]}, value: ...}}` to {COMMON_FOLDER}/rules.yml"
    elif expression.startswith("transforms."):
        fix = f"add `- {{id: {expression[11:]}, sql: ...}}` to {COMMON_FOLDER}/transformations.yml"
    elif "." in expression:
        fix = f"define it in {COMMON_FOLDER}/sources.yml or pass --params"
    else:
        fix = f'pass --params \'{{"{expression}": "..."}}\''
    return Problem(file, key, f"unknown parameter {{{{ {expression} }}}}{hint}", fix)


def _typed(text: str) -> object:
    """A whole-value placeholder's text read as YAML reads a plain scalar (strictly)."""
    if text in ("true", "false"):
        return text == "true"
    if _INT.match(text):
        return int(text)
    if _FLOAT.match(text) and repr(float(text)) == text.lstrip("+"):
        return float(text)
    return text
