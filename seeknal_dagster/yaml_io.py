"""Strict YAML reading: scalars stay as written, repeated keys and tabs are errors with lines.

PyYAML's default (YAML 1.1) schema turns `NO` into False, `012345` into an integer, `12:30` into
a sexagesimal number and `1.10` into 1.1. Pipeline files carry country codes, ids and versions, so
only unambiguous scalars are converted here: true/false, null, integers without leading zeros and
floats that print back exactly as written. Everything else stays a string.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from seeknal_dagster.errors import Problem

_BaseLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class YamlFileError(Exception):
    """Internal: one file could not be read; carries the problem to report."""

    def __init__(self, problem: Problem):
        self.problem = problem
        super().__init__(problem.render())


class _StrictLoader(_BaseLoader):  # type: ignore[misc, valid-type]
    yaml_implicit_resolvers: dict[str, list[tuple[str, re.Pattern[str]]]] = {}

    def __init__(self, stream: Any, file_label: str):
        super().__init__(stream)
        self.file_label = file_label


def _add_resolver(tag: str, pattern: str, first: str) -> None:
    regexp = re.compile(pattern, re.X)
    for char in first:
        _StrictLoader.yaml_implicit_resolvers.setdefault(char, []).append((tag, regexp))


_add_resolver("tag:yaml.org,2002:bool", r"^(?:true|True|TRUE|false|False|FALSE)$", "tTfF")
_add_resolver("tag:yaml.org,2002:null", r"^(?:~|null|Null|NULL|)$", "~nN\0")
_add_resolver("tag:yaml.org,2002:int", r"^[-+]?(?:0|[1-9][0-9]*)$", "-+0123456789")
_add_resolver("tag:yaml.org,2002:float", r"^[-+]?(?:0|[1-9][0-9]*)\.[0-9]+$", "-+0123456789")
# The empty scalar resolves to null; PyYAML looks it up under the empty first character.
_StrictLoader.yaml_implicit_resolvers.setdefault("", []).append(
    ("tag:yaml.org,2002:null", re.compile(r"^$"))
)


def _construct_bool(loader: _StrictLoader, node: yaml.ScalarNode) -> bool:
    text = str(loader.construct_scalar(node))
    # NOTE: only an explicit `!!bool` tag reaches here with another word (`!!bool yes`).
    if text.lower() not in ("true", "false"):
        raise YamlFileError(
            Problem(
                loader.file_label,
                "",
                f"a boolean must be true or false, found {text!r}",
                "write true or false",
                node.start_mark.line + 1,
            )
        )
    return text.lower() == "true"


def _construct_float(loader: _StrictLoader, node: yaml.ScalarNode) -> float | str:
    text = str(loader.construct_scalar(node))
    value = float(text)
    # NOTE: `1.10` would print back as `1.1`; such a value is a version or a code, keep the text.
    return value if repr(value) == text.lstrip("+") else text


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    loader.flatten_mapping(node)
    result: dict[Any, Any] = {}
    first_line: dict[Any, int] = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        line = key_node.start_mark.line + 1
        if not isinstance(key, (str, int, float, bool)) and key is not None:
            raise YamlFileError(
                Problem(
                    loader.file_label,
                    "",
                    f"a mapping key must be a plain value, found {type(key).__name__}",
                    "write the key as a plain word",
                    line,
                )
            )
        if key in first_line:
            raise YamlFileError(
                Problem(
                    loader.file_label,
                    str(key),
                    f"key '{key}' appears twice in one mapping (lines {first_line[key]} and {line})",
                    "keep one of them; YAML would silently use the last",
                    line,
                )
            )
        first_line[key] = line
        result[key] = loader.construct_object(value_node, deep=True)
    return result


_StrictLoader.add_constructor("tag:yaml.org,2002:bool", _construct_bool)
_StrictLoader.add_constructor("tag:yaml.org,2002:float", _construct_float)
_StrictLoader.add_constructor("tag:yaml.org,2002:map", _construct_mapping)


def _indented_with_tab(text: str, line: int) -> bool:
    lines = text.splitlines()
    if not 1 <= line <= len(lines):
        return False
    row = lines[line - 1]
    return "\t" in row[: len(row) - len(row.lstrip(" \t"))]


def load_yaml_text(text: str, file_label: str) -> Any:
    """Parses YAML text with the strict schema.

    Raises:
        YamlFileError: the text is not valid YAML, or a mapping repeats a key.
    """
    loader = _StrictLoader(text, file_label)
    try:
        return loader.get_single_data()
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        line = mark.line + 1 if mark is not None else None
        if line is not None and _indented_with_tab(text, line):
            raise YamlFileError(
                Problem(
                    file_label,
                    "",
                    "a tab is used for indentation",
                    "indent with spaces only; YAML does not allow tabs",
                    line,
                )
            ) from None
        detail = " ".join(part for part in (error.context, error.problem) if part)
        raise YamlFileError(
            Problem(file_label, "", f"invalid YAML: {detail}", "correct the YAML syntax", line)
        ) from None
    except yaml.YAMLError as error:
        raise YamlFileError(
            Problem(file_label, "", f"invalid YAML: {error}", "correct the YAML syntax")
        ) from None
    finally:
        loader.dispose()


def load_yaml_file(path: Path, file_label: str) -> Any:
    """Reads and parses one YAML file; see `load_yaml_text`."""
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise YamlFileError(
            Problem(
                file_label, "", f"cannot read the file: {error.strerror}", "check its permissions"
            )
        ) from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise YamlFileError(
            Problem(
                file_label,
                "",
                f"the file is not UTF-8 text (byte {error.start})",
                "save it as UTF-8",
            )
        ) from None
    return load_yaml_text(text.replace("\r\n", "\n"), file_label)
