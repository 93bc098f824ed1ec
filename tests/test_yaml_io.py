"""Tests for seeknal_dagster.yaml_io: scalars kept as written, strict errors with file and line."""

from __future__ import annotations

from pathlib import Path

import pytest

from seeknal_dagster.yaml_io import YamlFileError, load_yaml_file, load_yaml_text


def load_error(text: str) -> str:
    """The rendered problem of YAML text that must not load."""
    with pytest.raises(YamlFileError) as caught:
        load_yaml_text(text, "seeknal/node.yml")
    return caught.value.problem.render()


# --- scalars ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "written",
    [
        "NO",
        "no",
        "Yes",
        "on",
        "OFF",
        "y",
        "012345",
        "007",
        "1.10",
        "100.50",
        "12:30",
        "1:02:03",
        "2024-01-31",
        "2024-01-31 10:00:00",
        "0x1F",
        "0o17",
        "1_000",
        "1e3",
        ".5",
        ".inf",
        ".NaN",
        "3.14159265358979323846",
    ],
)
def test_load_yaml_text_keeps_ambiguous_scalar_as_written(written: str) -> None:
    assert load_yaml_text(f"value: {written}\n", "f.yml") == {"value": written}


@pytest.mark.parametrize(
    ("written", "value"),
    [
        ("true", True),
        ("False", False),
        ("TRUE", True),
        ("0", 0),
        ("42", 42),
        ("-7", -7),
        ("+3", 3),
        ("1.5", 1.5),
        ("-0.25", -0.25),
        ("10.0", 10.0),
        ("~", None),
        ("null", None),
        ("", None),
    ],
)
def test_load_yaml_text_converts_unambiguous_scalar(written: str, value: object) -> None:
    loaded = load_yaml_text(f"value: {written}\n", "f.yml")["value"]

    assert loaded == value and type(loaded) is type(value)


def test_load_yaml_text_keys_stay_as_written() -> None:
    loaded = load_yaml_text("NO: country\non: switch\n012: code\n", "f.yml")

    assert loaded == {"NO": "country", "on": "switch", "012": "code"}


def test_load_yaml_text_quoted_scalars_are_strings() -> None:
    assert load_yaml_text("a: '42'\nb: \"true\"\n", "f.yml") == {"a": "42", "b": "true"}


def test_load_yaml_text_explicit_bool_tag_needs_true_or_false() -> None:
    assert load_yaml_text("a: !!bool True\n", "f.yml") == {"a": True}
    assert "seeknal/node.yml:2" in load_error("a: 1\nb: !!bool yes\n")
    assert "must be true or false, found 'yes'" in load_error("b: !!bool yes\n")


# --- structure errors -------------------------------------------------------------------------


def test_load_yaml_text_duplicate_key_names_both_lines() -> None:
    message = load_error("kind: source\nname: a\nname: b\n")

    assert message.startswith("seeknal/node.yml:3 [name]:")
    assert "appears twice" in message and "lines 2 and 3" in message
    assert "Fix: keep one" in message


def test_load_yaml_text_duplicate_key_in_nested_mapping() -> None:
    message = load_error("params:\n  delimiter: ','\n  header: true\n  delimiter: ';'\n")

    assert "seeknal/node.yml:4 [delimiter]" in message and "lines 2 and 4" in message


def test_load_yaml_text_same_key_in_sibling_mappings_is_fine() -> None:
    text = "inputs:\n  - ref: source.a\n  - ref: source.b\n"

    assert load_yaml_text(text, "f.yml") == {"inputs": [{"ref": "source.a"}, {"ref": "source.b"}]}


def test_load_yaml_text_syntax_error_has_line() -> None:
    message = load_error("kind: source\nname: [orders\nsource: csv\n")

    assert message.startswith("seeknal/node.yml:")
    assert "invalid YAML" in message and "Fix: correct the YAML syntax" in message


def test_load_yaml_text_several_documents_rejected() -> None:
    message = load_error("kind: source\n---\nkind: transform\n")

    assert "seeknal/node.yml:2" in message and "single document" in message


def test_load_yaml_text_complex_key_rejected() -> None:
    message = load_error("? [a, b]\n: 1\n")

    assert "a mapping key must be a plain value, found list" in message


# --- tabs -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "kind: source\nparams:\n\tdelimiter: ','\n",
        "kind: source\ninputs:\n  - ref: a\n\t- ref: b\n",
        "kind: source\ndescription: first\n\tsecond\n",
        "kind: transform\ntransform: |\n\tSELECT 1\n",
    ],
)
def test_load_yaml_text_tab_indentation_names_line(text: str) -> None:
    message = load_error(text)

    assert message.startswith("seeknal/node.yml:3") or message.startswith("seeknal/node.yml:4")
    assert "a tab is used for indentation" in message and "indent with spaces" in message


def test_load_yaml_text_tab_inside_block_scalar_is_content() -> None:
    text = "transform: |\n  SELECT\n  \tid\n  FROM t\n"

    assert load_yaml_text(text, "f.yml") == {"transform": "SELECT\n\tid\nFROM t\n"}


def test_load_yaml_text_tab_after_colon_is_fine() -> None:
    assert load_yaml_text("kind:\tsource\n", "f.yml") == {"kind": "source"}


# --- files ------------------------------------------------------------------------------------


def test_load_yaml_file_empty_is_none(tmp_path: Path) -> None:
    path = tmp_path / "empty.yml"
    path.write_text("# only a comment\n")

    assert load_yaml_file(path, "empty.yml") is None


def test_load_yaml_file_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin.yml"
    path.write_bytes(b"name: caf\xe9\n")

    with pytest.raises(YamlFileError) as caught:
        load_yaml_file(path, "seeknal/latin.yml")

    assert caught.value.problem.file == "seeknal/latin.yml"
    assert "not UTF-8" in str(caught.value) and "byte 9" in str(caught.value)
    assert caught.value.problem.fix == "save it as UTF-8"


def test_load_yaml_file_bom_and_crlf(tmp_path: Path) -> None:
    path = tmp_path / "windows.yml"
    path.write_bytes("\ufeffkind: source\r\ndescription: |\r\n  a\r\n  b\r\n".encode())

    assert load_yaml_file(path, "windows.yml") == {"kind": "source", "description": "a\nb\n"}


def test_load_yaml_file_unreadable(tmp_path: Path) -> None:
    with pytest.raises(YamlFileError) as caught:
        load_yaml_file(tmp_path / "missing.yml", "seeknal/missing.yml")

    assert caught.value.problem.render().startswith("seeknal/missing.yml: cannot read the file")
