"""Project validation through the real CLI: each problem names its file, key and fix, the command
exits 1 and nothing is written under target/."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest

ORDERS_CSV = "order_id,customer_id,amount,country\n1,10,9.5,NO\n2,11,3.0,SE\n"

ORDERS = """\
kind: source
name: orders
source: csv
table: data/orders.csv
"""

TOTALS = """\
kind: transform
name: totals
inputs:
  - ref: source.orders
transform: |
  SELECT customer_id, SUM(amount) AS total FROM source.orders GROUP BY customer_id
"""


def shop(files: dict[str, str | bytes] | None = None) -> dict[str, str | bytes]:
    """A valid project (source.orders -> transform.totals) with `files` added or replaced."""
    return {
        "data/orders.csv": ORDERS_CSV,
        "seeknal/sources/orders.yml": ORDERS,
        "seeknal/transforms/totals.yml": TOTALS,
        **(files or {}),
    }


def transform(name: str, *reads: str, inputs: tuple[str, ...] | None = None) -> str:
    """A transform node reading `reads` (listed as inputs unless `inputs` says otherwise)."""
    listed = reads if inputs is None else inputs
    lines = ["kind: transform", f"name: {name}"]
    if listed:
        lines += ["inputs:", *(f"  - ref: {ref}" for ref in listed)]
    joins = " CROSS JOIN ".join(reads) or "(SELECT 1 AS one)"
    lines += ["transform: |", f"  SELECT * FROM {joins}"]
    return "\n".join(lines) + "\n"


def exposure(*lines: str) -> str:
    """An exposure `report` of transform.totals with the extra top-level `lines`."""
    head = ["kind: exposure", "name: report", *lines]
    return "\n".join([*head, "inputs:", "  - ref: transform.totals"]) + "\n"


@pytest.fixture
def rejected(seeknal, target_snapshot) -> Callable[..., str]:
    """`rejected(root, *words, command="plan")`: the command exits 1, its error names every word,
    every problem ends with a fix, and target/ is as before. Returns the error output."""

    def check(root: Path, *words: str, command: str = "plan") -> str:
        before = target_snapshot(root)
        result = seeknal(root, command)

        assert result.returncode == 1, result.stdout + result.stderr
        assert "Traceback" not in result.stderr
        for word in words:
            assert word in result.stderr, f"{word!r} not in:\n{result.stderr}"
        problems = [line for line in result.stderr.splitlines() if line.startswith("  - ")]
        assert problems and all(". Fix: " in line for line in problems), result.stderr
        assert target_snapshot(root) == before
        return result.stderr

    return check


@pytest.fixture
def accepted(seeknal, target_snapshot) -> Callable[[Path], str]:
    """`accepted(root)`: `seeknal validate` exits 0 and writes nothing. Returns all its output."""

    def check(root: Path) -> str:
        before = target_snapshot(root)
        result = seeknal(root, "validate")

        assert result.returncode == 0, result.stdout + result.stderr
        assert target_snapshot(root) == before
        return result.stdout + result.stderr

    return check


# --- valid projects ---------------------------------------------------------------------------


def test_validate_valid_project_exits_0_and_writes_nothing(make_project, accepted) -> None:
    root = make_project(shop())

    output = accepted(root)

    assert "Project is valid" in output
    assert "Nodes: 2" in output and "Edges: 1" in output
    assert not (root / "target").exists()


def test_validate_keeps_existing_target_unchanged(make_project, accepted, target_snapshot) -> None:
    root = make_project(shop({"target/manifest.json": '{"schema_version": 1, "nodes": {}}'}))
    before = target_snapshot(root)

    accepted(root)

    assert target_snapshot(root) == before


def test_plan_valid_project_writes_manifest_with_counts(make_project, seeknal) -> None:
    root = make_project(shop())

    result = seeknal(root, "plan")

    assert result.returncode == 0, result.stderr
    assert "Nodes: 2" in result.stdout and "Edges: 1" in result.stdout
    manifest = json.loads((root / "target" / "manifest.json").read_text())
    assert manifest["schema_version"] == 1
    assert sorted(manifest["nodes"]) == ["source.orders", "transform.totals"]
    assert manifest["edges"] == [["source.orders", "transform.totals"]]


def test_plan_keeps_yaml_scalars_as_written(make_project, seeknal) -> None:
    rule = """\
kind: rule
name: no
description: NO
owner: 012345
tags: [1.10, "12:30", 12:30]
inputs:
  - ref: source.orders
rule:
  type: accepted_values
  column: country
  params:
    values: [NO, SE, 012]
"""
    root = make_project(shop({"seeknal/rules/no.yml": rule}))

    result = seeknal(root, "plan")

    assert result.returncode == 0, result.stderr
    node = json.loads((root / "target" / "manifest.json").read_text())["nodes"]["rule.no"]
    assert node["description"] == "NO"
    assert node["owner"] == "012345"
    assert node["tags"] == ["1.10", "12:30", "12:30"]
    assert node["definition"]["checks"][0]["values"] == ["NO", "SE", "012"]


# --- YAML of a node file ----------------------------------------------------------------------


def test_yaml_syntax_error_names_file_and_line(make_project, rejected) -> None:
    broken = "kind: source\nname: orders\nsource: csv\ntable: [data/orders.csv\n"
    root = make_project(shop({"seeknal/sources/orders.yml": broken}))

    stderr = rejected(root, "seeknal/sources/orders.yml:", "invalid YAML", "correct the YAML")

    assert re.search(r"orders\.yml:[45]\b", stderr)


def test_yaml_duplicate_key_names_both_lines(make_project, rejected) -> None:
    twice = ORDERS + "description: first\ntable: data/other.csv\n"
    root = make_project(shop({"seeknal/sources/orders.yml": twice}))

    rejected(root, "seeknal/sources/orders.yml:6 [table]", "appears twice", "lines 4 and 6")


def test_yaml_tab_indentation_names_line(make_project, rejected) -> None:
    tabbed = "kind: transform\nname: totals\ninputs:\n\t- ref: source.orders\n"
    root = make_project(shop({"seeknal/transforms/totals.yml": tabbed}))

    rejected(root, "seeknal/transforms/totals.yml:4", "tab", "indent with spaces")


def test_yaml_tab_inside_sql_block_is_accepted(make_project, accepted) -> None:
    sql_with_tabs = TOTALS.replace("  SELECT", "  SELECT\n  \tcustomer_id,\n  \t1 AS one,")
    root = make_project(shop({"seeknal/transforms/totals.yml": sql_with_tabs}))

    accepted(root)


def test_yaml_empty_node_file(make_project, rejected) -> None:
    root = make_project(shop({"seeknal/transforms/empty.yml": ""}))

    rejected(root, "seeknal/transforms/empty.yml", "found an empty file", "kind:")


def test_yaml_list_instead_of_mapping(make_project, rejected) -> None:
    root = make_project(shop({"seeknal/transforms/listed.yml": "- kind: transform\n- name: x\n"}))

    rejected(root, "seeknal/transforms/listed.yml", "one mapping", "found a list")


def test_yaml_non_utf8_file(make_project, rejected) -> None:
    latin1 = "kind: source\nname: orders\ndescription: caf\xe9\n".encode("latin-1")
    root = make_project(shop({"seeknal/sources/orders.yml": latin1}))

    rejected(root, "seeknal/sources/orders.yml", "not UTF-8", "save it as UTF-8")


def test_yaml_utf8_bom_and_crlf_are_accepted(make_project, accepted) -> None:
    windows = ("\ufeff" + ORDERS.replace("\n", "\r\n")).encode("utf-8")
    root = make_project(shop({"seeknal/sources/orders.yml": windows}))

    accepted(root)


# --- kind and name ----------------------------------------------------------------------------


def test_kind_missing(make_project, rejected) -> None:
    root = make_project(shop({"seeknal/transforms/totals.yml": TOTALS.replace("kind:", "#")}))

    rejected(root, "seeknal/transforms/totals.yml [kind]", "missing", "add `kind:`")


def test_name_missing(make_project, rejected) -> None:
    root = make_project(shop({"seeknal/transforms/totals.yml": TOTALS.replace("name:", "#")}))

    rejected(root, "seeknal/transforms/totals.yml [name]", "missing", "add `name:")


def test_kind_unknown_suggests_closest(make_project, rejected) -> None:
    typo = TOTALS.replace("kind: transform", "kind: transfrom")
    root = make_project(shop({"seeknal/transforms/totals.yml": typo}))

    rejected(root, "[kind]", "unknown kind 'transfrom'", "did you mean 'transform'?")


@pytest.mark.parametrize("name", ["my-node", "1abc", "tot als"])
def test_name_invalid_identifier(make_project, rejected, name: str) -> None:
    bad = TOTALS.replace("name: totals", f"name: {name}")
    root = make_project(shop({"seeknal/transforms/totals.yml": bad}))

    rejected(root, "seeknal/transforms/totals.yml [name]", f"invalid name '{name}'", "letters")


@pytest.mark.parametrize(("written", "found"), [("123", "int"), ("[a]", "list")])
def test_name_not_text(make_project, rejected, written: str, found: str) -> None:
    bad = TOTALS.replace("name: totals", f"name: {written}")
    root = make_project(shop({"seeknal/transforms/totals.yml": bad}))

    rejected(root, "seeknal/transforms/totals.yml [name]", "invalid name", found)


def test_id_duplicate_names_both_files(make_project, rejected) -> None:
    root = make_project(shop({"seeknal/transforms/totals_copy.yml": TOTALS}))

    rejected(
        root,
        "seeknal/transforms/totals_copy.yml [name]",
        "duplicate node id transform.totals",
        "seeknal/transforms/totals.yml",
        "rename one",
    )


def test_id_duplicate_of_unsupported_node_names_both_files(make_project, rejected) -> None:
    metric = "kind: metric\nname: totals\n"
    root = make_project(
        shop({"seeknal/a_metrics/totals.yml": metric, "seeknal/z/totals_again.yml": metric})
    )

    rejected(
        root,
        "seeknal/z/totals_again.yml [name]",
        "duplicate node id metric.totals",
        "(also in seeknal/a_metrics/totals.yml)",
    )


# --- references -------------------------------------------------------------------------------


def test_inputs_unknown_node_suggests_closest(make_project, rejected) -> None:
    typo = TOTALS.replace("- ref: source.orders", "- ref: source.order")
    root = make_project(shop({"seeknal/transforms/totals.yml": typo}))

    rejected(
        root,
        "seeknal/transforms/totals.yml [inputs]",
        "unknown node 'source.order'",
        "did you mean 'source.orders'?",
    )


def test_inputs_malformed_ref(make_project, rejected) -> None:
    bare = TOTALS.replace("- ref: source.orders", "- ref: orders")
    root = make_project(shop({"seeknal/transforms/totals.yml": bare}))

    rejected(root, "[inputs[0]]", "expected `ref: kind.name`", "- ref: source.")


def test_sql_reads_node_not_in_inputs(make_project, rejected) -> None:
    root = make_project(
        shop({"seeknal/transforms/report.yml": transform("report", "source.orders", inputs=())})
    )

    rejected(
        root,
        "seeknal/transforms/report.yml [transform]",
        "reads source.orders, which is not listed in inputs",
        "add `- ref: source.orders`",
    )


def test_sql_ref_call_to_unknown_node_suggests_closest(make_project, rejected) -> None:
    sql = TOTALS.replace("FROM source.orders", "FROM ref('source.ordrs')")
    root = make_project(shop({"seeknal/transforms/totals.yml": sql}))

    rejected(root, "[transform]", "unknown node 'source.ordrs'", "did you mean 'source.orders'?")


def test_graph_cycle_reports_path(make_project, rejected) -> None:
    root = make_project(
        shop(
            {
                "seeknal/transforms/a.yml": transform("a", "transform.c"),
                "seeknal/transforms/b.yml": transform("b", "transform.a"),
                "seeknal/transforms/c.yml": transform("c", "transform.b"),
            }
        )
    )

    stderr = rejected(root, "[inputs]", "dependency cycle", "break the cycle")

    path = (
        re.search(r"dependency cycle: (\w+\.\w+(?: -> \w+\.\w+)+)", stderr).group(1).split(" -> ")
    )
    assert len(path) == 4 and path[0] == path[-1]
    assert set(path) == {"transform.a", "transform.b", "transform.c"}
    reads = {
        "transform.a": "transform.c",
        "transform.b": "transform.a",
        "transform.c": "transform.b",
    }
    assert all(reads[after] == before for before, after in zip(path, path[1:], strict=False))


def test_graph_cycle_reported_with_other_problems(make_project, rejected) -> None:
    root = make_project(
        shop(
            {
                "seeknal/transforms/a.yml": transform("a", "transform.b"),
                "seeknal/transforms/b.yml": transform("b", "transform.a"),
                "seeknal/transforms/bad.yml": "kind: transform\n",
            }
        )
    )

    rejected(root, "dependency cycle", "seeknal/transforms/bad.yml [name]", "2 problems")


def test_inputs_self_reference(make_project, rejected) -> None:
    root = make_project(shop({"seeknal/transforms/loop.yml": transform("loop", "transform.loop")}))

    stderr = rejected(root, "seeknal/transforms/loop.yml [inputs]", "transform.loop")

    assert stderr.startswith("Error: 1 problem found")


# --- paths ------------------------------------------------------------------------------------


def test_source_data_file_missing(make_project, rejected) -> None:
    root = make_project(shop())
    (root / "data" / "orders.csv").unlink()

    rejected(
        root,
        "seeknal/sources/orders.yml [table]",
        "data file not found: data/orders.csv",
        "relative to the project root",
    )


def test_source_path_relative_to_root_not_cwd(make_project, seeknal) -> None:
    root = make_project(shop())

    result = seeknal(root, "validate", cwd=root / "seeknal")

    assert result.returncode == 0, result.stderr


def test_source_path_leading_out_of_project(make_project, rejected) -> None:
    root = make_project(shop())
    (root.parent / "outside.csv").write_text(ORDERS_CSV)
    escaping = ORDERS.replace("data/orders.csv", "../outside.csv")
    (root / "seeknal/sources/orders.yml").write_text(escaping)

    rejected(root, "[table]", "'../outside.csv' leads outside the project", "allow_external_paths")


def test_source_path_absolute(make_project, rejected) -> None:
    root = make_project(shop())
    outside = root.parent / "outside.csv"
    outside.write_text(ORDERS_CSV)
    (root / "seeknal/sources/orders.yml").write_text(
        ORDERS.replace("data/orders.csv", str(outside))
    )

    rejected(root, "[table]", f"absolute path '{outside}'", "relative to the project root")


def test_source_path_absolute_allowed_explicitly(make_project, accepted) -> None:
    root = make_project(shop())
    outside = root.parent / "outside.csv"
    outside.write_text(ORDERS_CSV)
    (root / "seeknal/sources/orders.yml").write_text(
        ORDERS.replace("data/orders.csv", str(outside))
    )
    (root / "seeknal_project.yml").write_text("name: shop\nallow_external_paths: true\n")

    accepted(root)


@pytest.mark.parametrize("written", ["no", "yes", "off"])
def test_project_file_allow_external_paths_must_be_boolean(
    make_project, rejected, written: str
) -> None:
    settings = f"name: shop\nallow_external_paths: {written}\n"
    root = make_project(shop({"seeknal_project.yml": settings}))

    rejected(
        root,
        "seeknal_project.yml [allow_external_paths]",
        f"expected true or false, found {written!r}",
        "allow_external_paths: true",
    )


def test_source_path_symlink_out_of_project(make_project, rejected) -> None:
    root = make_project(shop())
    outside = root.parent / "secret.csv"
    outside.write_text(ORDERS_CSV)
    (root / "data" / "orders.csv").unlink()
    (root / "data" / "orders.csv").symlink_to(outside)

    rejected(root, "seeknal/sources/orders.yml [table]", "leads outside the project")


def test_exposure_path_leading_out_of_project(make_project, rejected) -> None:
    escaping = exposure("type: file", "path: ../../report.csv")
    root = make_project(shop({"seeknal/exposures/report.yml": escaping}))

    rejected(root, "seeknal/exposures/report.yml [path]", "leads outside the project")


def test_exposure_overwriting_source_data(make_project, rejected) -> None:
    clobber = exposure("type: file", "path: ./data/orders.csv")
    root = make_project(shop({"seeknal/exposures/report.yml": clobber}))

    rejected(
        root,
        "seeknal/exposures/report.yml [path]",
        "exposure.report would overwrite the data file of source.orders",
        "a path of its own",
    )


def test_exposure_path_shared_by_two_exposures(make_project, rejected) -> None:
    second = exposure("path: out/report.csv").replace("name: report", "name: report_copy")
    root = make_project(
        shop(
            {
                "seeknal/exposures/report.yml": exposure("path: out/report.csv"),
                "seeknal/exposures/report_copy.yml": second,
            }
        )
    )

    rejected(root, "would overwrite the export of exposure.report")


def test_exposure_path_inside_target(make_project, rejected) -> None:
    into_state = exposure("path: target/cache/transform/totals.parquet")
    root = make_project(shop({"seeknal/exposures/report.yml": into_state}))

    rejected(root, "seeknal/exposures/report.yml [path]", "inside target/", "outside target/")


# --- required fields per kind -----------------------------------------------------------------


def test_source_without_table(make_project, rejected) -> None:
    root = make_project(shop({"seeknal/sources/orders.yml": ORDERS.replace("table:", "#")}))

    rejected(root, "seeknal/sources/orders.yml [table]", "missing", "add `table:")


def test_source_without_format(make_project, rejected) -> None:
    root = make_project(shop({"seeknal/sources/orders.yml": ORDERS.replace("source: csv", "")}))

    rejected(root, "seeknal/sources/orders.yml [source]", "missing", "add `source:` (csv")


def test_source_format_not_supported_blocks_its_consumers(make_project, rejected) -> None:
    postgres = ORDERS.replace("source: csv", "source: postgres")
    root = make_project(shop({"seeknal/sources/orders.yml": postgres}))

    rejected(
        root,
        "seeknal/transforms/totals.yml [inputs]",
        "transform.totals depends on source.orders",
        "a postgres source node, which is not supported yet",
    )


def test_transform_without_sql(make_project, rejected) -> None:
    no_sql = "kind: transform\nname: totals\ninputs:\n  - ref: source.orders\n"
    root = make_project(shop({"seeknal/transforms/totals.yml": no_sql}))

    rejected(root, "seeknal/transforms/totals.yml [transform]", "missing", "SQL query")


def test_exposure_without_path(make_project, rejected) -> None:
    root = make_project(shop({"seeknal/exposures/report.yml": exposure("type: file")}))

    stderr = rejected(root, "seeknal/exposures/report.yml [path]", "missing", "add `path:")

    assert stderr.startswith("Error: 1 problem found")


def test_feature_group_without_entity(make_project, rejected) -> None:
    group = """\
kind: feature_group
name: customer_totals
inputs:
  - ref: transform.totals
"""
    root = make_project(shop({"seeknal/feature_groups/customer_totals.yml": group}))

    rejected(root, "seeknal/feature_groups/customer_totals.yml [entity]", "join keys", "entity:")


RULE_HEAD = "kind: rule\nname: checks\ninputs:\n  - ref: source.orders\n"


def test_rule_without_rule(make_project, rejected) -> None:
    root = make_project(shop({"seeknal/rules/checks.yml": RULE_HEAD}))

    rejected(root, "seeknal/rules/checks.yml [rule]", "missing", "add `rule:")


def test_rule_unknown_type_suggests_closest(make_project, rejected) -> None:
    rule = RULE_HEAD + "rule:\n  type: uniquness\n  columns: [order_id]\n"
    root = make_project(shop({"seeknal/rules/checks.yml": rule}))

    rejected(root, "[rule.type]", "unknown rule type 'uniquness'", "did you mean 'uniqueness'?")


def test_rule_range_without_bounds(make_project, rejected) -> None:
    rule = RULE_HEAD + "rule:\n  - type: range\n    column: amount\n"
    root = make_project(shop({"seeknal/rules/checks.yml": rule}))

    rejected(root, "seeknal/rules/checks.yml [rule[0].params]", "`min` and/or `max`", "min: 0")


def test_rule_without_checked_node(make_project, rejected) -> None:
    rule = "kind: rule\nname: checks\nrule:\n  type: uniqueness\n  columns: [order_id]\n"
    root = make_project(shop({"seeknal/rules/checks.yml": rule}))

    rejected(root, "seeknal/rules/checks.yml [inputs]", "exactly one node, found 0")


def test_rule_assertion_reads_other_node(make_project, rejected) -> None:
    rule = RULE_HEAD + (
        "rule:\n  type: sql_assertion\n  params:\n"
        "    sql: SELECT * FROM source.orders o JOIN transform.totals t USING (customer_id)\n"
    )
    root = make_project(shop({"seeknal/rules/checks.yml": rule}))

    rejected(
        root,
        "seeknal/rules/checks.yml [rule.params.sql]",
        "reads transform.totals, but a rule can only read the node it checks",
        "read source.orders only",
    )


def test_transform_reading_rule_output(make_project, rejected) -> None:
    rule = RULE_HEAD + "rule:\n  type: uniqueness\n  columns: [order_id]\n"
    root = make_project(
        shop(
            {
                "seeknal/rules/checks.yml": rule,
                "seeknal/transforms/after.yml": transform("after", "rule.checks"),
            }
        )
    )

    rejected(
        root,
        "seeknal/transforms/after.yml [inputs]",
        "transform.after reads rule.checks, but a rule produces no table",
        "read source.orders instead",
    )


def test_transform_misspelt_sql_key_suggests_rename(make_project, rejected) -> None:
    typo = TOTALS.replace("transform: |", "tranform: |")
    root = make_project(shop({"seeknal/transforms/totals.yml": typo}))

    rejected(root, "[transform]: required key is missing", "rename `tranform:` to `transform:`")


def test_node_unknown_key_warns_with_closest(make_project, accepted) -> None:
    extra = TOTALS + "decription: totals per customer\n"
    root = make_project(shop({"seeknal/transforms/totals.yml": extra}))

    output = accepted(root)

    assert "seeknal/transforms/totals.yml: unknown key(s) ignored for a transform" in output
    assert "decription (did you mean 'description'?)" in output


def test_exposure_format_not_given_by_extension(make_project, rejected) -> None:
    text_file = exposure("path: out/report.txt")
    root = make_project(shop({"seeknal/exposures/report.yml": text_file}))

    rejected(root, "seeknal/exposures/report.yml [format]", "'out/report.txt'", "set `format:`")


def test_exposure_type_not_supported(make_project, rejected) -> None:
    dashboard = exposure("type: dashboard", "path: out/report.csv")
    root = make_project(shop({"seeknal/exposures/report.yml": dashboard}))

    rejected(root, "[type]", "not supported yet: exposure type 'dashboard'", "type: file")


# --- a whole project at once ------------------------------------------------------------------


def test_project_problems_reported_together_sorted_by_file(make_project, rejected) -> None:
    root = make_project(
        shop(
            {
                "seeknal_project.yml": "name: shop\nmax_workers: 0\n",
                "seeknal/z_last.yml": "kind: transfrom\nname: z\n",
                "seeknal/a_first.yml": "kind: source\nname: a\nsource: csv\n",
                "seeknal/m_middle.yml": transform("m", "source.orders", inputs=()),
            }
        )
    )
    (root / "data" / "orders.csv").unlink()

    stderr = rejected(root, "Error: 5 problems found in the project")

    files = re.findall(r"^  - (\S+?\.yml)", stderr, re.MULTILINE)
    assert files == [
        "seeknal/a_first.yml",
        "seeknal/m_middle.yml",
        "seeknal/sources/orders.yml",
        "seeknal/z_last.yml",
        "seeknal_project.yml",
    ]


def test_project_invalid_keeps_existing_target(make_project, rejected) -> None:
    root = make_project(
        shop(
            {
                "target/manifest.json": '{"schema_version": 1, "nodes": {}}',
                "target/cache/source/orders.parquet": b"PAR1 old output",
                "seeknal/transforms/totals.yml": TOTALS.replace("name:", "#"),
            }
        )
    )

    rejected(root, "[name]")


def test_run_invalid_project_starts_nothing(make_project, rejected) -> None:
    root = make_project(shop({"seeknal/transforms/totals.yml": TOTALS.replace("name:", "#")}))

    rejected(root, "[name]", command="run")


# --- seeknal_project.yml and node discovery ---------------------------------------------------


def test_project_file_unknown_keys_warn_once(make_project, seeknal) -> None:
    root = make_project(shop({"seeknal_project.yml": "name: shop\nretries: 3\ncolour: blue\n"}))

    result = seeknal(root, "validate")

    assert result.returncode == 0, result.stderr
    output = result.stdout + result.stderr
    assert output.count("unknown key(s) ignored: colour, retries") == 1
    assert output.count("seeknal_project.yml") == 1


def test_project_file_seeknal_keys_accepted_silently(make_project, accepted) -> None:
    settings = "name: shop\nversion: 1.10\nprofile: default\nconfig-version: 2\nstate_backend: x\n"
    root = make_project(shop({"seeknal_project.yml": settings}))

    output = accepted(root)

    assert "unknown" not in output and "⚠" not in output


def test_project_file_without_name(make_project, rejected) -> None:
    root = make_project(shop({"seeknal_project.yml": "version: 1\n"}))

    rejected(root, "seeknal_project.yml [name]", "missing", "name: my_project")


def test_discovery_skips_common_folder(make_project, accepted) -> None:
    root = make_project(shop({"seeknal/common/shared.yml": "- not: a node\n"}))

    output = accepted(root)

    assert "Nodes: 2" in output


def test_discovery_without_seeknal_folder_uses_root_files(make_project, accepted) -> None:
    root = make_project(
        {
            "data/orders.csv": ORDERS_CSV,
            "orders.yml": ORDERS,
            "totals.yaml": TOTALS,
            "profiles.yml": "default: {}\n",
            "nested/ignored.yml": "not: a node\n",
        }
    )

    output = accepted(root)

    assert "Nodes: 2" in output and "Edges: 1" in output


# --- kinds not supported yet ------------------------------------------------------------------


SEMANTIC_MODEL = "kind: semantic_model\nname: sales\ninputs:\n  - ref: transform.totals\n"


def test_unsupported_kind_reported_and_rest_validates(make_project, accepted) -> None:
    root = make_project(shop({"seeknal/semantic/sales.yml": SEMANTIC_MODEL}))

    output = accepted(root)

    assert output.count("not supported yet") == 1
    assert "semantic_model" in output and "semantic_model.sales" in output
    assert "Nodes: 2" in output


def test_unsupported_kind_as_input_names_both(make_project, rejected) -> None:
    consumer = transform("weekly", "semantic_model.sales")
    root = make_project(
        shop(
            {
                "seeknal/semantic/sales.yml": SEMANTIC_MODEL,
                "seeknal/transforms/weekly.yml": consumer,
            }
        )
    )

    rejected(
        root,
        "seeknal/transforms/weekly.yml [inputs]",
        "transform.weekly depends on semantic_model.sales",
        "not supported yet",
    )


def test_misspelt_source_param_is_warned_with_a_suggestion(make_project, seeknal) -> None:
    misspelt = ORDERS.replace("source: csv", 'source: csv\nparams:\n  delimeter: ","')
    root = make_project(shop({"seeknal/sources/orders.yml": misspelt}))

    result = seeknal(root, "validate")

    assert result.returncode == 0, result.stderr
    assert "unknown key(s) under params ignored: delimeter (did you mean 'delimiter'?)" in (
        result.stdout + result.stderr
    )
