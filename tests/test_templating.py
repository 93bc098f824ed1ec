"""`{{ ... }}` parameters: common files, env, built-in dates, --params/--date, and what a changed
parameter re-runs."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest

from seeknal_dagster import templating
from seeknal_dagster.errors import Problem
from seeknal_dagster.yaml_io import load_yaml_text

SOURCES = """\
sources:
  - id: orders
    ref: source.orders
    params:
      dateCol: order_date
      idCol: order_id
"""
RULES = """\
rules:
  - id: completed
    value: "status = 'completed'"
"""
TRANSFORMATIONS = """\
transformations:
  - id: withRegion
    sql: "LEFT JOIN ref('source.regions') r ON r.id = o.region_id"
"""


def common_project(tmp_path: Path, files: dict[str, str]) -> Path:
    for relative, text in files.items():
        path = tmp_path / "seeknal" / "common" / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path


def parameters(
    root: Path,
    params: dict[str, str] | None = None,
    run_date: date | None = None,
    today: date = date(2024, 3, 5),
) -> tuple[templating.Parameters, list[Problem]]:
    problems: list[Problem] = []
    found = templating.load_parameters(root, problems, params, run_date, today)
    return found, problems


def resolve(value: object, names: templating.Parameters) -> tuple[object, list[Problem]]:
    return templating.resolve(value, "seeknal/transforms/t.yml", names)


# --- names from the common files -------------------------------------------------------------


def test_resolve_common_source_rule_and_transformation(tmp_path) -> None:
    root = common_project(
        tmp_path,
        {"sources.yml": SOURCES, "rules.yml": RULES, "transformations.yaml": TRANSFORMATIONS},
    )
    names, problems = parameters(root)
    node = {
        "transform": "SELECT {{ orders.dateCol }}, {{orders.idCol}} FROM {{ orders.ref }} o\n"
        "{{ transforms.withRegion }} WHERE {{ rules.completed }}"
    }

    resolved, unresolved = resolve(node, names)

    assert problems == [] and unresolved == []
    assert resolved == {
        "transform": "SELECT order_date, order_id FROM source.orders o\n"
        "LEFT JOIN ref('source.regions') r ON r.id = o.region_id "
        "WHERE status = 'completed'"
    }


def test_resolve_value_with_quotes_and_colons_is_inserted_verbatim(tmp_path) -> None:
    rules = "rules:\n  - id: odd\n    value: \"note = 'a: \\\"b\\\"' OR x = '{x}'\"\n"
    names, problems = parameters(common_project(tmp_path, {"rules.yml": rules}))
    document = load_yaml_text("kind: transform\ntransform: |\n  WHERE {{ rules.odd }}\n", "t")

    resolved, unresolved = resolve(document, names)

    assert problems == [] and unresolved == []
    assert resolved["transform"] == "WHERE note = 'a: \"b\"' OR x = '{x}'\n"


def test_resolve_walks_nested_values_but_never_keys(tmp_path) -> None:
    names, _ = parameters(tmp_path, {"p": "data/x.csv"})
    node = {"params": {"path": "{{ p }}", "{{ p }}": 1}, "rule": [{"sql": "{{ p }}"}]}

    resolved, unresolved = resolve(node, names)

    assert unresolved == []
    assert resolved == {
        "params": {"path": "data/x.csv", "{{ p }}": 1},
        "rule": [{"sql": "data/x.csv"}],
    }


def test_resolve_whole_value_placeholder_takes_the_scalar_type(tmp_path) -> None:
    names, _ = parameters(tmp_path, {"n": "5", "x": "2.5", "flag": "false", "code": "007"})
    node = {
        "a": "{{ n }}",
        "b": " {{ x }} ",
        "c": "{{ flag }}",
        "d": "{{ code }}",
        "e": "n={{ n }}",
    }

    resolved, _ = resolve(node, names)

    assert resolved == {"a": 5, "b": 2.5, "c": False, "d": "007", "e": "n=5"}


def test_resolve_placeholder_inside_a_value_is_resolved_in_turn(tmp_path) -> None:
    names, _ = parameters(tmp_path, {"window": "{{ days }} days", "days": "7"})

    resolved, unresolved = resolve({"sql": "INTERVAL '{{ window }}'"}, names)

    assert unresolved == [] and resolved == {"sql": "INTERVAL '7 days'"}


def test_resolve_placeholder_loop_is_a_problem_not_a_hang(tmp_path) -> None:
    names, _ = parameters(tmp_path, {"a": "{{ b }}", "b": "{{ a }}"})

    _, unresolved = resolve({"sql": "{{ a }}"}, names)

    assert any("refers to itself" in p.message for p in unresolved)


# --- env, built-in dates, --params -----------------------------------------------------------


def test_resolve_env_variable_default_and_set(tmp_path, monkeypatch) -> None:
    names, _ = parameters(tmp_path)
    monkeypatch.delenv("SHOP_CURRENCY", raising=False)
    monkeypatch.setenv("SHOP_REGION", "eu-north")

    resolved, unresolved = resolve(
        {"a": "{{ env:SHOP_CURRENCY|USD }}", "b": "{{ env:SHOP_REGION|us }}", "c": "{{env:X|}}"},
        names,
    )

    assert unresolved == []
    assert resolved == {"a": "USD", "b": "eu-north", "c": ""}


def test_resolve_env_variable_unset_without_default_names_it(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("SHOP_SECRET", raising=False)
    names, _ = parameters(tmp_path)

    _, unresolved = resolve({"params": {"password": "{{ env:SHOP_SECRET }}"}}, names)

    assert [(p.key, p.message) for p in unresolved] == [
        ("params.password", "environment variable SHOP_SECRET in {{ env:SHOP_SECRET }} is not set")
    ]
    assert "{{ env:SHOP_SECRET|value }}" in unresolved[0].fix


def test_resolve_builtin_dates_run_date_defaults_to_today(tmp_path) -> None:
    names, _ = parameters(tmp_path, today=date(2024, 3, 1))

    resolved, _ = resolve("{{ today }} {{ yesterday }} {{ run_date }}", names)

    assert resolved == "2024-03-01 2024-02-29 2024-03-01"


def test_resolve_run_date_is_the_given_date(tmp_path) -> None:
    names, _ = parameters(tmp_path, run_date=date(2023, 12, 31), today=date(2024, 3, 1))

    resolved, _ = resolve("{{ run_date }}/{{ today }}", names)

    assert resolved == "2023-12-31/2024-03-01"


def test_cli_params_override_common_values(tmp_path) -> None:
    root = common_project(tmp_path, {"sources.yml": SOURCES})
    names, _ = parameters(root, templating.parse_cli_params('{"orders": {"dateCol": "ship_date"}}'))

    resolved, _ = resolve("{{ orders.dateCol }} {{ orders.idCol }}", names)

    assert resolved == "ship_date order_id"


def test_parse_cli_params_flattens_objects_and_spells_scalars() -> None:
    parsed = templating.parse_cli_params('{"a": 1, "b": true, "c": "x", "d": {"e": 2.5}}')

    assert parsed == {"a": "1", "b": "true", "c": "x", "d.e": "2.5"}


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("{nope", "not valid JSON"),
        ("[1, 2]", "expected a JSON object, found list"),
        ('{"a": [1]}', "parameter 'a': expected text"),
        ('{"a": null}', "parameter 'a': expected text"),
        ('{"run_date": "2024-01-01"}', "run_date cannot be set with --params; use --date"),
    ],
)
def test_parse_cli_params_rejects(text: str, words: str) -> None:
    with pytest.raises(ValueError, match=words.replace("(", r"\(").replace("[", r"\[")):
        templating.parse_cli_params(text)


def test_parse_run_date_rejects_a_non_date() -> None:
    with pytest.raises(ValueError, match="YYYY-MM-DD, found '03/01/2024'"):
        templating.parse_run_date("03/01/2024")


# --- unresolved names and broken common files ------------------------------------------------


def test_resolve_unknown_name_names_file_key_and_close_match(tmp_path) -> None:
    names, _ = parameters(tmp_path, {"min_amount": "10"})

    _, unresolved = resolve({"transform": "SELECT * WHERE amount > {{ min_amout }}"}, names)

    assert [p.render() for p in unresolved] == [
        "seeknal/transforms/t.yml [transform]: unknown parameter {{ min_amout }} (did you mean "
        "'min_amount'?). Fix: pass --params '{\"min_amout\": \"...\"}'"
    ]


@pytest.mark.parametrize(
    ("name", "fix"),
    [
        ("rules.missing", "add `- {id: missing, value: ...}` to seeknal/common/rules.yml"),
        ("transforms.gone", "add `- {id: gone, sql: ...}` to seeknal/common/transformations.yml"),
        ("orders.nope", "define it in seeknal/common/sources.yml or pass --params"),
    ],
)
def test_resolve_unknown_common_name_says_where_to_define_it(tmp_path, name, fix) -> None:
    names, _ = parameters(tmp_path)

    resolved, unresolved = resolve({"rule": [{"params": {"sql": f"x {{{{ {name} }}}}"}}]}, names)

    assert [(p.key, p.fix) for p in unresolved] == [("rule[0].params.sql", fix)]
    assert resolved == {"rule": [{"params": {"sql": f"x {{{{ {name} }}}}"}}]}


def test_common_file_problems_name_file_and_entry(tmp_path) -> None:
    root = common_project(
        tmp_path,
        {
            "rules.yml": "rules:\n  - {id: a, value: x}\n  - {id: a, value: y}\n  - {value: z}\n",
            "sources.yml": "sources: {id: a}\n",
            "transformations.yml": "transformations:\n  - {id: t, sql: [1]}\n",
        },
    )

    _, problems = parameters(root)

    assert sorted((p.file, p.key) for p in problems) == [
        ("seeknal/common/rules.yml", "rules[1].id"),
        ("seeknal/common/rules.yml", "rules[2].id"),
        ("seeknal/common/sources.yml", "sources"),
        ("seeknal/common/transformations.yml", "transformations[0].sql"),
    ]


# --- through the CLI -------------------------------------------------------------------------

TINY = {
    "data/orders.csv": "id,amount\n1,5\n2,15\n3,25\n",
    "seeknal/sources/orders.yml": "kind: source\nname: orders\nsource: csv\ntable: data/orders.csv\n",
    "seeknal/transforms/big.yml": (
        "kind: transform\nname: big\ninputs: [{ref: source.orders}]\n"
        "transform: SELECT id FROM source.orders WHERE amount > {{ limit }} ORDER BY id\n"
    ),
    "seeknal/transforms/big_count.yml": (
        "kind: transform\nname: big_count\ninputs: [{ref: transform.big}]\n"
        "transform: SELECT count(*) AS n FROM transform.big\n"
    ),
    "seeknal/transforms/dated.yml": (
        "kind: transform\nname: dated\ninputs: [{ref: source.orders}]\n"
        "transform: SELECT DATE '{{ run_date }}' AS day, count(*) AS n FROM source.orders\n"
    ),
}


def run_json(seeknal, root: Path, *args: str) -> dict[str, str]:
    result = seeknal(root, "--format", "json", *args, "run")
    assert result.returncode == 0, result.stderr
    return {n["node"]: n["status"] for n in json.loads(result.stdout)["nodes"]}


def read_rows(root: Path, node_id: str) -> list[tuple]:
    import duckdb

    kind, name = node_id.split(".")
    path = root / "target" / "cache" / kind / f"{name}.parquet"
    return duckdb.sql(f"SELECT * FROM read_parquet('{path}')").fetchall()


def test_cli_changed_param_reruns_only_the_nodes_using_it(make_project, seeknal) -> None:
    root = make_project(TINY)
    first = run_json(seeknal, root, "--params", '{"limit": 10}', "--date", "2024-03-01")
    assert set(first.values()) == {"SUCCESS"}
    assert read_rows(root, "transform.big") == [(2,), (3,)]

    second = run_json(seeknal, root, "--params", '{"limit": 20}', "--date", "2024-03-01")

    assert {n for n, s in second.items() if s == "SUCCESS"} == {
        "transform.big",
        "transform.big_count",
    }
    assert {n for n, s in second.items() if s == "CACHED"} == {"source.orders", "transform.dated"}
    assert read_rows(root, "transform.big") == [(3,)]
    assert read_rows(root, "transform.big_count") == [(1,)]


def test_cli_changed_date_reruns_only_the_node_using_run_date(make_project, seeknal) -> None:
    root = make_project(TINY)
    run_json(seeknal, root, "--params", '{"limit": 10}', "--date", "2024-03-01")

    statuses = run_json(seeknal, root, "--params", '{"limit": 10}', "--date", "2024-03-02")

    assert {n for n, s in statuses.items() if s == "SUCCESS"} == {"transform.dated"}
    assert read_rows(root, "transform.dated") == [(date(2024, 3, 2), 3)]


def test_cli_unresolved_param_fails_validation_naming_file_and_name(make_project, seeknal) -> None:
    root = make_project(TINY)

    result = seeknal(root, "--params", '{"limt": 10}', "plan")

    assert result.returncode == 1
    assert (
        "seeknal/transforms/big.yml [transform]: unknown parameter {{ limit }} (did you mean "
        "'limt'?)" in result.stderr
    )
    assert not (root / "target" / "manifest.json").exists()


def test_cli_rejects_invalid_params_and_date(make_project, seeknal) -> None:
    root = make_project(TINY)

    bad_json = seeknal(root, "--params", "{limit: 1}", "plan")
    bad_date = seeknal(root, "--date", "tomorrow", "plan")

    assert bad_json.returncode == 2 and "Invalid value for --params" in bad_json.stderr
    assert bad_date.returncode == 2 and "expected a date as YYYY-MM-DD" in bad_date.stderr
