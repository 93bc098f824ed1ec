"""`seeknal plan ENV` and `seeknal diff` end to end: the tutorial's sequence with the real CLI on a
copy of the bundled fraud-detection example, and what planning must never write."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import SeeknalRunner, TargetSnapshot, run_seeknal

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "fraud_detection"
TXN_FEATURES = "seeknal/feature_groups/13_feature_group_txn_features.yml"
MERCHANT_RISK_SCORE = """\
  merchant_risk_score:
    dtype: float
    description: Merchant's smoothed fraud rate from reviews completed before the transaction
"""
WARNING_BLOCK = """\
⚠ WARNING: BREAKING changes detected.
  Downstream consumers may fail if they depend on removed features.
  Review carefully before applying.
"""
PLAN_KEYS = {
    "environment",
    "baseline",
    "created_at",
    "project_fingerprint",
    "changes",
    "to_execute",
    "added",
    "removed",
}


@pytest.fixture(scope="module")
def built_example(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example copied without data/target/output, its data generated and run once."""
    root = tmp_path_factory.mktemp("built") / "fraud_detection"
    ignore = shutil.ignore_patterns("data", "target", "output", "__pycache__")
    shutil.copytree(EXAMPLE, root, ignore=ignore)
    subprocess.run(
        [sys.executable, "generate_data.py", "--transactions", "2000"],
        cwd=root,
        check=True,
        capture_output=True,
        timeout=120,
    )
    result = run_seeknal(root, "run")
    assert result.returncode == 0, result.stdout + result.stderr
    return root


@pytest.fixture
def example(built_example: Path, tmp_path: Path) -> Path:
    """A fresh copy of the built example (production already run) for one test to edit."""
    root = tmp_path / "fraud_detection"
    shutil.copytree(built_example, root, symlinks=True)
    return root


def add_ip_reputation_score(root: Path) -> None:
    path = root / TXN_FEATURES
    text = path.read_text(encoding="utf-8")
    assert text.endswith("\n") and "ip_reputation_score:\n" not in text.split("features:")[-1]
    path.write_text(text + "  ip_reputation_score: {dtype: float}\n", encoding="utf-8")


def remove_merchant_risk_score(root: Path) -> None:
    path = root / TXN_FEATURES
    text = path.read_text(encoding="utf-8")
    assert MERCHANT_RISK_SCORE in text
    path.write_text(text.replace(MERCHANT_RISK_SCORE, ""), encoding="utf-8")


def state_files(snapshot: TargetSnapshot) -> TargetSnapshot:
    """A snapshot of target/ without the data-file hash cache, which any command may refresh."""
    assert snapshot is not None
    return {k: v for k, v in snapshot.items() if k != "file_hashes.json"}


def ok(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_plan_tutorial_sequence(example: Path, seeknal: SeeknalRunner) -> None:
    unchanged = ok(seeknal(example, "plan", "experiment"))
    assert unchanged.startswith("Planning environment: experiment\n")
    assert "  Production manifest: target/state/prod.json (15 nodes)\n" in unchanged
    assert "  New manifest: seeknal/ (15 nodes)\n" in unchanged
    assert "\nNo changes detected.\n" in unchanged
    assert "  Name: experiment\n" in unchanged
    assert "  Changes: 0 nodes to execute\n  Added: 0\n  Removed: 0\n" in unchanged

    add_ip_reputation_score(example)
    added = ok(seeknal(example, "plan", "experiment"))
    assert "  NON_BREAKING (1):\n" in added
    assert "    - feature_group.txn_features (new feature: ip_reputation_score)\n" in added
    assert "  DEPENDENT (1):\n" in added
    assert (
        "    - exposure.training_data (upstream changed: feature_group.txn_features, "
        "new column: ip_reputation_score)\n"
    ) in added
    assert "  Changes: 2 nodes to execute\n  Added: 0\n  Removed: 0\n" in added
    assert "BREAKING (" not in added.replace("NON_BREAKING", "")
    assert "WARNING" not in added
    saved = json.loads((example / "target/environments/experiment/plan.json").read_text())
    assert saved["schema_version"] == 1
    assert saved["to_execute"] == ["feature_group.txn_features", "exposure.training_data"]
    assert saved["changes"][0] == {
        "node": "feature_group.txn_features",
        "category": "NON_BREAKING",
        "reasons": ["new feature: ip_reputation_score"],
    }

    remove_merchant_risk_score(example)
    breaking = ok(seeknal(example, "plan", "breaking-test"))
    assert breaking.startswith("Planning environment: breaking-test\n")
    assert "  BREAKING (1):\n" in breaking
    assert (
        "    - feature_group.txn_features (removed feature: merchant_risk_score, "
        "new feature: ip_reputation_score)\n"
    ) in breaking
    assert (
        "        ↳ exposure.training_data passes feature_group.txn_features.merchant_risk_score "
        "through, which was removed: its output loses that column\n"
    ) in breaking
    assert "  DEPENDENT (1):\n" in breaking
    assert (
        "    - exposure.training_data (upstream BREAKING change: feature_group.txn_features"
    ) in breaking
    assert "\n" + WARNING_BLOCK + "\n" in breaking
    assert breaking.index("DEPENDENT (1)") < breaking.index("WARNING") < breaking.index("Name:")
    assert "  Changes: 2 nodes to execute (1 BREAKING)\n" in breaking
    assert (example / "target/environments/breaking-test/plan.json").is_file()


def test_plan_json_has_spec_shape_and_saved_plan_is_versioned(
    example: Path, seeknal: SeeknalRunner
) -> None:
    add_ip_reputation_score(example)
    remove_merchant_risk_score(example)

    printed = json.loads(ok(seeknal(example, "--format", "json", "plan", "breaking-test")))

    saved = json.loads((example / "target/environments/breaking-test/plan.json").read_text())
    assert saved["schema_version"] == 1
    assert PLAN_KEYS <= printed.keys()
    assert printed["environment"] == "breaking-test"
    assert printed["baseline"] == "prod"
    assert printed["created_at"].endswith("Z")
    assert printed["changes"] == [
        {
            "node": "feature_group.txn_features",
            "category": "BREAKING",
            "reasons": ["removed feature: merchant_risk_score", "new feature: ip_reputation_score"],
            "impact": [
                "exposure.training_data passes feature_group.txn_features.merchant_risk_score "
                "through, which was removed: its output loses that column"
            ],
        },
        {
            "node": "exposure.training_data",
            "category": "DEPENDENT",
            "reasons": [
                "upstream BREAKING change: feature_group.txn_features",
                "removed column: merchant_risk_score",
                "new column: ip_reputation_score",
            ],
        },
    ]
    assert printed["to_execute"] == ["feature_group.txn_features", "exposure.training_data"]
    assert printed["added"] == [] and printed["removed"] == []
    assert {k: v for k, v in saved.items() if k != "schema_version"} == {
        k: v for k, v in printed.items() if k != "schema_version"
    }


def test_plan_json_printed_is_the_saved_document(example: Path, seeknal: SeeknalRunner) -> None:
    add_ip_reputation_score(example)

    printed = json.loads(ok(seeknal(example, "--format", "json", "plan", "experiment")))

    saved = json.loads((example / "target/environments/experiment/plan.json").read_text())
    assert printed == saved


def test_diff_shows_the_plan_categories_and_writes_nothing(
    example: Path, seeknal: SeeknalRunner, target_snapshot: Callable[[Path], TargetSnapshot]
) -> None:
    add_ip_reputation_score(example)
    remove_merchant_risk_score(example)
    before = state_files(target_snapshot(example))

    shown = ok(seeknal(example, "diff"))
    as_json = json.loads(ok(seeknal(example, "--format", "json", "diff")))

    assert state_files(target_snapshot(example)) == before
    assert not (example / "target/environments").exists()
    assert "  BREAKING (1):\n" in shown
    assert "    - feature_group.txn_features (removed feature: merchant_risk_score" in shown
    assert "    - exposure.training_data (upstream BREAKING change: " in shown
    assert WARNING_BLOCK in shown
    assert "  Changes: 2 nodes to execute (1 BREAKING)\n" in shown
    planned = json.loads(ok(seeknal(example, "--format", "json", "plan", "breaking-test")))
    assert as_json["changes"] == planned["changes"]
    assert as_json["to_execute"] == planned["to_execute"]


def test_plan_without_environment_leaves_production_alone(
    example: Path, seeknal: SeeknalRunner
) -> None:
    add_ip_reputation_score(example)
    state = example / "target/state/prod.json"
    before = state.read_bytes()

    shown = ok(seeknal(example, "plan"))

    assert state.read_bytes() == before
    assert "Manifest generated: target/manifest.json" in shown
    written = json.loads((example / "target/manifest.json").read_text())
    assert written["schema_version"] == 1
    assert "feature_group.txn_features" in written["nodes"]
    assert not (example / "target/environments").exists()


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("../x", "invalid environment name '../x'"),
        ("Prod", "invalid environment name 'Prod'"),
        ("prod", "'prod' is production, not an environment to plan"),
    ],
)
def test_plan_refuses_bad_environment_names(
    example: Path,
    seeknal: SeeknalRunner,
    target_snapshot: Callable[[Path], TargetSnapshot],
    name: str,
    message: str,
) -> None:
    add_ip_reputation_score(example)
    before = target_snapshot(example)

    result = seeknal(example, "plan", name)

    assert result.returncode == 1
    assert message in result.stderr + result.stdout
    assert target_snapshot(example) == before
    assert not (example.parent / "x").exists()


# --- small projects ---------------------------------------------------------------------------

ORDERS_CSV = "order_id,amount\n1,10.5\n2,20.0\n"
SMALL = {
    "data/orders.csv": ORDERS_CSV,
    "seeknal/orders.yml": "kind: source\nname: orders\nsource: csv\ntable: data/orders.csv\n",
    "seeknal/big.yml": (
        "kind: transform\nname: big\ninputs: [{ref: source.orders}]\n"
        "transform: SELECT order_id, amount FROM source.orders WHERE amount > 15\n"
    ),
}
RULE = (
    "kind: rule\nname: amount_present\ninputs: [{ref: transform.big}]\n"
    'rule: {type: "null", columns: [amount]}\n'
)


def test_plan_before_any_run_marks_every_node_new(
    make_project: Callable[..., Path], seeknal: SeeknalRunner
) -> None:
    root = make_project(SMALL)

    plan = json.loads(ok(seeknal(root, "--format", "json", "plan", "dev")))

    assert [(c["node"], c["category"]) for c in plan["changes"]] == [
        ("source.orders", "NEW"),
        ("transform.big", "NEW"),
    ]
    assert plan["to_execute"] == ["source.orders", "transform.big"]
    assert plan["added"] == ["source.orders", "transform.big"]


def test_plan_after_a_run_with_a_sql_edit(
    make_project: Callable[..., Path], seeknal: SeeknalRunner
) -> None:
    root = make_project(SMALL)
    ok(seeknal(root, "run"))
    path = root / "seeknal/big.yml"
    path.write_text(path.read_text().replace("amount > 15", "amount > 5"), encoding="utf-8")

    shown = ok(seeknal(root, "plan", "dev"))

    assert "  NON_BREAKING (1):\n    - transform.big (SQL logic changed)\n" in shown
    assert "  Changes: 1 nodes to execute\n" in shown


def test_plan_after_a_run_with_a_rule_finds_no_changes(
    make_project: Callable[..., Path], seeknal: SeeknalRunner
) -> None:
    root = make_project({**SMALL, "seeknal/rule.yml": RULE})
    ok(seeknal(root, "run"))

    shown = ok(seeknal(root, "plan", "dev"))

    assert "No changes detected." in shown
    assert "  Added: 0\n" in shown
