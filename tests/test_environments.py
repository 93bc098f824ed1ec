"""Environments end to end: plan, apply, promote, rollback, refusals, crash safety, locks, gc.

Every test drives the real `seeknal` CLI and reads the files it wrote. Most start from one
applied environment (`applied`, built once per module) and work on their own copy of it.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pytest
from conftest import run_seeknal, snapshot_target
from test_runner import SHOP, read

from seeknal_dagster.environments import FAULT_POINT_VARIABLE
from seeknal_dagster.storage import Store

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "fraud_detection"
ORDER_FEATURES = "seeknal/feature_groups/order_features.yml"
CHECKPOINTS = ("promote:before_switch", "promote:after_switch", "promote:after_exports")
# Each summary row of an environment run is padded to the longest label, as the product prints it.
EXECUTED_2 = "  Executed:                  2\n"
CACHED_5 = "  Cached (from production):  5\n"


# --- helpers ---------------------------------------------------------------------------------


def add_country_feature(root: Path) -> None:
    """The experiment: a NON_BREAKING new feature on order_features (training depends on it)."""
    path = root / ORDER_FEATURES
    path.write_text(path.read_text() + "  country: {dtype: string}\n")


def write_project(root: Path, files: dict[str, str]) -> Path:
    for relative, content in {"seeknal_project.yml": "name: shop\n", **files}.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
    return root


def clone(root: Path, destination: Path) -> Path:
    """A copy of a project with its target/ (cache links are relative, so they still resolve)."""
    shutil.copytree(root, destination, symlinks=True)
    return destination


def prod_document(root: Path) -> dict:
    return json.loads((root / "target" / "state" / "prod.json").read_bytes())


def fingerprints(root: Path, env: str = "prod") -> dict[str, str]:
    store = Store(root / "target")
    return {node: p.fingerprint for node, p in store.read_state(env).pointers.items()}


def count_rows(path: Path) -> int:
    """Rows of an exported file, parquet or CSV."""
    reader = "read_csv_auto" if path.suffix == ".csv" else "read_parquet"
    return duckdb.connect().execute(f"SELECT count(*) FROM {reader}('{path}')").fetchone()[0]


def columns(path: Path) -> list[str]:
    return [name for (name,) in read(path, "SELECT column_name FROM (DESCRIBE t)")]


def production_files(root: Path) -> dict[str, bytes]:
    """Production's files: pointer files and rollback points, what each cache link resolves to,
    every snapshot and every exported file."""
    target = root / "target"
    files: dict[str, bytes] = {}
    for folder in (target / "state", target / "snapshots", root / "output"):
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                files[path.relative_to(root).as_posix()] = path.read_bytes()
    for link in sorted((target / "cache").rglob("*.parquet")):
        files[f"{link.relative_to(root).as_posix()} -> {os.readlink(link)}"] = link.read_bytes()
    return files


def snapshot_files(root: Path) -> list[Path]:
    return [p for p in (root / "target" / "snapshots").rglob("*") if p.is_file()]


def target_files(root: Path, locks: bool = False) -> dict[str, bytes] | None:
    """Everything under target/ but the cache of data-file hashes, which any command refreshes
    (its keys are absolute paths, so a copied project rehashes on its first command), and unless
    `locks`, the lock files, where every writer leaves its name."""
    entries = snapshot_target(root)
    if entries is None:
        return None
    return {
        k: v
        for k, v in entries.items()
        if k != "file_hashes.json" and (locks or not k.startswith("locks/"))
    }


def assert_refused(result: subprocess.CompletedProcess, *phrases: str) -> None:
    assert result.returncode == 1, result.stdout + result.stderr
    for phrase in phrases:
        assert phrase in result.stderr, result.stderr


def assert_production_consistent(root: Path, export: str = "output/training.parquet") -> None:
    """Every snapshot production points to exists, each cache link resolves to its pointer's
    snapshot, and the exported file is the exposure's current snapshot, byte for byte."""
    target = root / "target"
    store = Store(target)
    pointers = store.read_state("prod").pointers
    for node_id, pointer in pointers.items():
        assert (target / pointer.snapshot).is_file(), node_id
        assert os.path.samefile(store.cache_path("prod", node_id), target / pointer.snapshot)
    exposure = next(p for n, p in pointers.items() if n.startswith("exposure."))
    assert (root / export).read_bytes() == (target / exposure.snapshot).read_bytes()


@dataclass(frozen=True)
class Applied:
    """A SHOP project whose environment `exp` (a new feature) is applied, not yet promoted."""

    root: Path
    before_apply: dict[str, bytes]  # production's files before `seeknal run --env exp`
    apply: subprocess.CompletedProcess
    old: dict[str, str]  # production's node fingerprints
    new: dict[str, str]  # exp's node fingerprints

    @property
    def executed(self) -> set[str]:
        return {n for n in self.new if self.new[n] != self.old[n]}


@pytest.fixture(scope="module")
def applied(tmp_path_factory: pytest.TempPathFactory) -> Applied:
    root = write_project(tmp_path_factory.mktemp("applied") / "shop", SHOP)
    assert run_seeknal(root, "run").returncode == 0
    add_country_feature(root)
    assert run_seeknal(root, "plan", "exp").returncode == 0
    before = production_files(root)

    result = run_seeknal(root, "run", "--env", "exp")

    assert result.returncode == 0, result.stderr
    return Applied(root, before, result, fingerprints(root), fingerprints(root, "exp"))


@pytest.fixture
def shop(applied: Applied, tmp_path: Path) -> Path:
    """A private copy of the `applied` project, free to change."""
    return clone(applied.root, tmp_path / "shop")


# --- the tutorial, end to end ----------------------------------------------------------------


def test_environment_workflow_of_the_tutorial_on_the_example(tmp_path, seeknal):
    root = tmp_path / "fraud_detection"
    shutil.copytree(EXAMPLE, root, ignore=shutil.ignore_patterns("data", "target", "output"))
    generated = subprocess.run(
        [sys.executable, "generate_data.py", "--transactions", "2000"],
        cwd=root,
        capture_output=True,
        text=True,
    )
    assert generated.returncode == 0, generated.stderr
    assert seeknal(root, "run").returncode == 0
    features = root / "seeknal" / "feature_groups" / "13_feature_group_txn_features.yml"
    training = Path("exposure") / "training_data.parquet"
    prod_training = root / "target" / "cache" / training

    unchanged = seeknal(root, "plan", "experiment")
    assert unchanged.returncode == 0, unchanged.stderr
    assert "No changes detected." in unchanged.stdout
    assert "Changes: 0 nodes to execute" in unchanged.stdout

    features.write_text(features.read_text() + "  ip_reputation_score:\n    dtype: float\n")
    planned = seeknal(root, "plan", "experiment")
    assert planned.returncode == 0, planned.stderr
    assert "  NON_BREAKING (1):\n" in planned.stdout
    assert "    - feature_group.txn_features (new feature: ip_reputation_score)" in planned.stdout
    assert "  DEPENDENT (1):\n    - exposure.training_data (upstream changed" in planned.stdout
    assert "Changes: 2 nodes to execute\n" in planned.stdout

    experiment = seeknal(root, "run", "--env", "experiment", "--parallel")
    assert experiment.returncode == 0, experiment.stderr
    assert "  Executed:                  2\n" in experiment.stdout
    assert "  Cached (from production):  13\n" in experiment.stdout
    assert "Outputs: target/environments/experiment/" in experiment.stdout
    env_training = root / "target" / "environments" / "experiment" / "cache" / training
    assert "ip_reputation_score" in columns(env_training)
    assert "ip_reputation_score" not in columns(prod_training)
    assert read(env_training, "SELECT count(*) FROM t") == [(2000,)]

    promoted = seeknal(root, "promote", "experiment")
    assert promoted.returncode == 0, promoted.stderr
    assert "ip_reputation_score" in columns(prod_training)
    assert "ip_reputation_score" in columns(root / "output" / "training_data.parquet")
    assert_production_consistent(root, "output/training_data.parquet")

    listed = seeknal(root, "env", "list")
    assert re.search(
        r"^  experiment +\d{4}-\d\d-\d\d \d\d:\d\d +\S+ \S+ +Promoted +2$", listed.stdout, re.M
    )

    text = features.read_text()
    without = re.sub(
        r"  merchant_risk_score:\n    dtype: float\n    description: [^\n]*\n", "", text
    )
    assert without != text
    features.write_text(without)
    breaking = seeknal(root, "plan", "breaking-test")
    assert breaking.returncode == 0, breaking.stderr
    assert "  BREAKING (1):\n" in breaking.stdout
    assert "feature_group.txn_features (removed feature: merchant_risk_score)" in breaking.stdout
    assert "exposure.training_data (upstream BREAKING change" in breaking.stdout
    assert "⚠ WARNING: BREAKING changes detected." in breaking.stdout
    assert "Changes: 2 nodes to execute (1 BREAKING)" in breaking.stdout

    # Production workflow: dev -> staging -> prod, then roll production back.
    experiment_state = prod_document(root)["nodes"]
    experiment_export = (root / "output" / "training_data.parquet").read_bytes()
    assert seeknal(root, "plan", "dev").returncode == 0
    assert seeknal(root, "run", "--env", "dev", "--parallel").returncode == 0
    to_staging = seeknal(root, "promote", "dev", "staging")
    assert to_staging.returncode == 0, to_staging.stderr
    assert fingerprints(root, "staging") == fingerprints(root, "dev")
    to_prod = seeknal(root, "promote", "staging")
    assert to_prod.returncode == 0, to_prod.stderr
    assert "merchant_risk_score" not in columns(root / "output" / "training_data.parquet")
    assert fingerprints(root) == fingerprints(root, "dev")

    rolled_back = seeknal(root, "rollback")

    assert rolled_back.returncode == 0, rolled_back.stderr
    assert prod_document(root)["nodes"] == experiment_state
    assert (root / "output" / "training_data.parquet").read_bytes() == experiment_export
    assert "merchant_risk_score" in columns(prod_training)
    assert_production_consistent(root, "output/training_data.parquet")


# --- apply -----------------------------------------------------------------------------------


def test_apply_runs_only_the_plan_and_reports_the_rest_as_cached(applied):
    assert applied.executed == {"feature_group.order_features", "exposure.training"}
    assert EXECUTED_2 in applied.apply.stdout
    assert CACHED_5 in applied.apply.stdout
    assert "Outputs: target/environments/exp/" in applied.apply.stdout
    env_cache = applied.root / "target" / "environments" / "exp" / "cache"
    assert "country" in columns(env_cache / "exposure" / "training.parquet")
    assert "country" not in columns(
        applied.root / "target" / "cache" / "exposure" / "training.parquet"
    )


def test_apply_leaves_production_byte_identical_and_copies_no_data(applied):
    root = applied.root
    after = production_files(root)
    store = Store(root / "target")

    # Production's files are untouched; the only new files are the executed nodes' snapshots.
    assert {k: after[k] for k in applied.before_apply} == applied.before_apply
    new_files = set(after) - set(applied.before_apply)
    assert len(new_files) == len(applied.executed)
    assert all(f.startswith("target/snapshots/") for f in new_files)
    snapshots_before = [f for f in applied.before_apply if f.startswith("target/snapshots/")]
    assert len(snapshot_files(root)) == len(snapshots_before) + len(applied.executed)

    # Reused nodes are links to production's very files (same inode); executed ones are not.
    for node_id in applied.new:
        mine, theirs = store.cache_path("exp", node_id), store.cache_path("prod", node_id)
        assert mine.is_symlink()
        same = os.stat(mine).st_ino == os.stat(theirs).st_ino
        assert same is (node_id not in applied.executed), node_id


def test_apply_writes_exposures_under_the_environment_only(make_project, seeknal, tmp_path):
    shared = tmp_path / "shared" / "big_orders.parquet"
    root = make_project(
        {
            "seeknal_project.yml": "name: shop\nallow_external_paths: true\n",
            "data/orders.csv": SHOP["data/orders.csv"],
            "seeknal/sources/orders.yml": SHOP["seeknal/sources/orders.yml"],
            "seeknal/transforms/big.yml": (
                "kind: transform\nname: big\ninputs: [{ref: source.orders}]\n"
                "transform: SELECT order_id, amount FROM source.orders WHERE amount > 20\n"
            ),
            "seeknal/exposures/csv.yml": (
                "kind: exposure\nname: big_csv\ntype: file\npath: output/big.csv\n"
                "inputs: [{ref: transform.big}]\n"
            ),
            "seeknal/exposures/absolute.yml": (
                f"kind: exposure\nname: big_abs\ntype: file\npath: {shared}\n"
                "inputs: [{ref: transform.big}]\n"
            ),
        }
    )
    assert seeknal(root, "run").returncode == 0
    production = {p: p.read_bytes() for p in (root / "output" / "big.csv", shared)}
    node = root / "seeknal" / "transforms" / "big.yml"
    node.write_text(node.read_text().replace("amount > 20", "amount > 50"))
    assert seeknal(root, "plan", "exp").returncode == 0

    result = seeknal(root, "run", "--env", "exp")

    assert result.returncode == 0, result.stderr
    assert {p: p.read_bytes() for p in production} == production
    exports = root / "target" / "environments" / "exp" / "exports"
    assert count_rows(exports / "output" / "big.csv") == 5
    assert count_rows(exports / str(shared).lstrip("/")) == 5
    assert count_rows(shared) == 8

    assert seeknal(root, "promote", "exp").returncode == 0
    assert count_rows(root / "output" / "big.csv") == 5
    assert count_rows(shared) == 5


# --- refusals --------------------------------------------------------------------------------


def test_apply_refuses_a_stale_plan_until_replanned_or_forced(shop, seeknal):
    orders = shop / "data" / "orders.csv"
    orders.write_text(orders.read_text() + "10,1,99.0,2024-01-10 10:00:00\n")
    before = target_files(shop)

    refused = seeknal(shop, "run", "--env", "exp")

    assert_refused(refused, "plan of 'exp' is stale", "seeknal plan exp", "--force")
    assert target_files(shop) == before

    forced = seeknal(shop, "run", "--env", "exp", "--force")

    assert forced.returncode == 0, forced.stderr
    env_orders = shop / "target" / "environments" / "exp" / "cache" / "source" / "orders.parquet"
    assert read(env_orders, "SELECT count(*) FROM t") == [(10,)]
    assert read(
        shop / "target" / "cache" / "source" / "orders.parquet", "SELECT count(*) FROM t"
    ) == [(9,)]


def test_promote_refuses_an_environment_that_is_only_planned(shop, seeknal):
    assert seeknal(shop, "plan", "other").returncode == 0
    before = target_files(shop)

    result = seeknal(shop, "promote", "other")

    assert_refused(result, "'other' is planned, not applied", "seeknal run --env other")
    assert target_files(shop) == before


def test_promote_refuses_a_stale_plan(shop, seeknal):
    node = shop / "seeknal" / "transforms" / "country_totals.yml"
    node.write_text(node.read_text().replace("count(*) AS n", "count(*) AS customers"))
    before = production_files(shop), target_files(shop)

    result = seeknal(shop, "promote", "exp")

    assert_refused(result, "plan of 'exp' is stale", "seeknal plan exp", "--force")
    assert (production_files(shop), target_files(shop)) == before


def test_promote_refuses_when_production_moved_since_planning(shop, seeknal, applied):
    customers = shop / "data" / "customers.csv"
    original = customers.read_text()
    customers.write_text(original + "4,FI\n")
    assert seeknal(shop, "run").returncode == 0  # production moves on another branch
    customers.write_text(original)
    before = production_files(shop)

    refused = seeknal(shop, "promote", "exp")

    assert_refused(refused, "production moved since 'exp' was planned", "--force")
    assert "source.customers was rebuilt" in refused.stderr
    assert production_files(shop) == before

    forced = seeknal(shop, "promote", "exp", "--force")

    assert forced.returncode == 0, forced.stderr
    assert fingerprints(shop) == applied.new
    assert_production_consistent(shop)


def lock_files(root: Path) -> set[str]:
    return {p.name for p in (root / "target" / "locks").iterdir()}


@pytest.mark.parametrize("name", ["../x", "/abs", "Prod", "a b", "prod"])
@pytest.mark.parametrize(
    "command",
    [
        ("plan", "{}"),
        ("run", "--env", "{}"),
        ("env", "delete", "{}"),
        ("promote", "exp", "{}"),
        ("rollback", "{}"),
    ],
    ids=["plan", "run-env", "env-delete", "promote-into", "rollback"],
)
def test_bad_environment_names_are_refused_and_nothing_is_written(
    shop, seeknal, tmp_path, name, command
):
    if name == "prod" and command[0] in ("promote", "rollback"):
        pytest.skip("promoting into and rolling back production are allowed")
    if name == "/abs" and command[0] in ("promote", "rollback"):
        # NOTE: not /abs itself: a lock taken before the name is checked would be /abs.lock.
        name = str(tmp_path / "abs")
    outside = set(tmp_path.rglob("*"))
    before = target_files(shop), lock_files(shop)

    result = seeknal(shop, *(part.format(name) for part in command))

    expected = "'prod' is production" if name == "prod" else "invalid environment name"
    assert_refused(result, expected)
    assert (target_files(shop), lock_files(shop)) == before
    assert set(tmp_path.rglob("*")) == outside


def test_promote_of_an_unknown_environment_suggests_the_closest(shop, seeknal):
    before = target_files(shop)

    result = seeknal(shop, "promote", "exq")

    assert_refused(result, "no environment named 'exq' (did you mean 'exp'?)")
    assert target_files(shop) == before


def test_rollback_with_nothing_to_roll_back_is_refused(shop, seeknal):
    before = target_files(shop)

    result = seeknal(shop, "rollback")

    assert_refused(result, "'prod' has no earlier state to roll back to")
    assert target_files(shop) == before


# --- promote, rollback -----------------------------------------------------------------------


def test_promote_then_rollback_restores_production_and_its_export(shop, seeknal, applied):
    before, pointers = production_files(shop), prod_document(shop)["nodes"]

    promoted = seeknal(shop, "promote", "exp")

    assert promoted.returncode == 0, promoted.stderr
    assert "re-exported exposure.training" in promoted.stdout
    assert fingerprints(shop) == applied.new
    assert "country" in columns(shop / "output" / "training.parquet")
    assert_production_consistent(shop)

    rolled_back = seeknal(shop, "rollback")

    assert rolled_back.returncode == 0, rolled_back.stderr
    assert prod_document(shop)["nodes"] == pointers
    after = production_files(shop)
    unchanged = [k for k in before if not k.startswith("target/state/")]
    assert {k: after[k] for k in unchanged} == {k: before[k] for k in unchanged}
    assert_production_consistent(shop)


def test_promote_again_re_exports_a_file_a_run_rewrote(shop, seeknal, applied):
    assert seeknal(shop, "promote", "exp").returncode == 0
    definition = (shop / ORDER_FEATURES).read_text()
    (shop / ORDER_FEATURES).write_text(definition.replace("  country: {dtype: string}\n", ""))
    assert seeknal(shop, "run").returncode == 0  # production rebuilds, rewriting its export
    assert "country" not in columns(shop / "output" / "training.parquet")
    (shop / ORDER_FEATURES).write_text(definition)

    result = seeknal(shop, "promote", "exp")

    assert result.returncode == 0, result.stderr
    assert fingerprints(shop) == applied.new
    assert_production_consistent(shop)


# --- crash safety ----------------------------------------------------------------------------


def spawn(root: Path, *args: str, fault: str | None = None) -> subprocess.Popen:
    """Starts the real CLI like `run_seeknal` does, optionally set to die at a checkpoint."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DAGSTER_HOME", "SEEKNAL_PROJECT_DIR", FAULT_POINT_VARIABLE)
    }
    env["CI"] = "true"
    if fault:
        env[FAULT_POINT_VARIABLE] = fault
    command = [sys.executable, "-m", "seeknal_dagster.cli", "--project", str(root), *args]
    return subprocess.Popen(
        command, cwd=root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )


def assert_whole_state(root: Path, applied: Applied) -> str:
    """Production's pointer file parses and is entirely the old or the new state, every snapshot
    it references exists, and every rollback point parses. Returns "old" or "new"."""
    document = prod_document(root)
    prints = {node: p["fingerprint"] for node, p in document["nodes"].items()}
    assert prints in (applied.old, applied.new)
    for pointer in document["nodes"].values():
        assert (root / "target" / pointer["snapshot"]).is_file()
    for point in (root / "target" / "state" / "history").rglob("*.json"):
        assert json.loads(point.read_bytes())["nodes"]
    return "new" if prints == applied.new else "old"


def kill_promotion(root: Path, fault: str | None = None, delay: float | None = None) -> int:
    process = spawn(root, "promote", "exp", fault=fault)
    if delay is not None:
        time.sleep(delay)
        process.send_signal(signal.SIGKILL)
    _, stderr = process.communicate(timeout=60)
    if fault is not None:
        assert process.returncode == -signal.SIGKILL, stderr.decode()
    return process.returncode


@pytest.mark.parametrize("fault", CHECKPOINTS)
def test_promote_killed_at_a_checkpoint_finishes_on_the_next_promote(shop, seeknal, applied, fault):
    old_export = (shop / "output" / "training.parquet").read_bytes()

    kill_promotion(shop, fault=fault)

    state = assert_whole_state(shop, applied)
    assert state == ("old" if fault == "promote:before_switch" else "new")
    if state == "old":
        assert (shop / "output" / "training.parquet").read_bytes() == old_export

    again = seeknal(shop, "promote", "exp")

    assert again.returncode == 0, again.stderr
    assert fingerprints(shop) == applied.new
    assert_production_consistent(shop)
    assert seeknal(shop, "rollback").returncode == 0
    assert fingerprints(shop) == applied.old
    assert (shop / "output" / "training.parquet").read_bytes() == old_export
    assert_production_consistent(shop)


@pytest.mark.parametrize(
    "fault",
    CHECKPOINTS,
)
def test_run_after_a_killed_promotion_leaves_production_consistent(shop, seeknal, applied, fault):
    kill_promotion(shop, fault=fault)

    result = seeknal(shop, "run")

    assert result.returncode == 0, result.stderr
    assert fingerprints(shop) == applied.new
    assert_production_consistent(shop)


def test_promote_killed_at_random_times_is_old_or_new_and_recovers(applied, tmp_path, seeknal):
    timed = clone(applied.root, tmp_path / "timed")
    started = time.perf_counter()
    assert seeknal(timed, "promote", "exp").returncode == 0
    duration = time.perf_counter() - started
    rng = random.Random(20260209)
    outcomes = []

    for trial in range(18):
        root = clone(applied.root, tmp_path / f"trial{trial}")
        # Most of a promotion is interpreter start-up; aim at its second half.
        returncode = kill_promotion(root, delay=rng.uniform(0.4, 1.0) * duration)
        outcomes.append((returncode, assert_whole_state(root, applied)))

        again = seeknal(root, "promote", "exp")

        assert again.returncode == 0, (trial, again.stderr)
        assert fingerprints(root) == applied.new
        assert_production_consistent(root)
    assert any(returncode == -signal.SIGKILL for returncode, _ in outcomes), outcomes


# --- two writers -----------------------------------------------------------------------------


def test_writers_are_refused_at_once_while_another_holds_the_lock(shop, seeknal):
    orders = shop / "data" / "orders.csv"
    orders.write_text(orders.read_text() + "10,1,99.0,2024-01-10 10:00:00\n")
    assert seeknal(shop, "plan", "exp").returncode == 0  # production has work to do, exp too
    store = Store(shop / "target")
    before = target_files(shop)

    with store.environment_lock("exp", "holder exp"):
        started = time.perf_counter()
        results = [seeknal(shop, "run", "--env", "exp"), seeknal(shop, "promote", "exp")]
        elapsed = time.perf_counter() - started
    with store.environment_lock("prod", "holder prod"):
        results += [seeknal(shop, "run"), seeknal(shop, "promote", "exp")]

    holders = ["holder exp", "holder exp", "holder prod", "holder prod"]
    for result, holder in zip(results, holders, strict=True):
        assert_refused(result, "is busy", holder)
    assert elapsed < 10
    assert target_files(shop) == before


# --- list, delete, gc ------------------------------------------------------------------------


def test_env_list_shows_status_and_changed_nodes(shop, seeknal):
    assert seeknal(shop, "plan", "other").returncode == 0

    listed = seeknal(shop, "env", "list")

    assert listed.returncode == 0
    assert re.search(r"^  exp +\S+ \S+ +\S+ \S+ +Applied +2$", listed.stdout, re.M)
    assert re.search(r"^  other +\S+ \S+ +\S+ \S+ +Planned +2$", listed.stdout, re.M)


def test_env_delete_removes_only_that_environment(shop, seeknal):
    assert seeknal(shop, "plan", "other").returncode == 0
    before = target_files(shop)

    unknown = seeknal(shop, "env", "delete", "othr")

    assert_refused(unknown, "no environment named 'othr' (did you mean 'other'?)")
    assert target_files(shop) == before

    result = seeknal(shop, "env", "delete", "other")

    assert result.returncode == 0, result.stderr
    assert not (shop / "target" / "environments" / "other").exists()
    assert target_files(shop) == {
        k: v for k, v in before.items() if not k.startswith("environments/other")
    }


def expire(root: Path, env: str) -> None:
    path = root / "target" / "environments" / env / "env_config.json"
    config = json.loads(path.read_bytes())
    config["last_accessed"] = "2000-01-01T00:00:00Z"
    path.write_text(json.dumps(config))


def snapshot_file(store: Store, node_id: str, fingerprint: str) -> Path:
    """The snapshot written for `fingerprint` (its name also carries the content's checksum)."""
    folder = store.snapshot_path(node_id, fingerprint).parent
    found = sorted(folder.glob(f"{fingerprint}-*.parquet"))
    assert len(found) == 1, found
    return found[0]


def age(paths: list[Path], seconds: float = 7200) -> None:
    when = time.time() - seconds
    for path in paths:
        os.utime(path, (when, when))


def test_env_gc_removes_expired_environments_and_unreferenced_old_snapshots(shop, seeknal, applied):
    assert seeknal(shop, "plan", "fresh").returncode == 0
    expire(shop, "exp")
    snapshots = shop / "target" / "snapshots"
    store = Store(shop / "target")
    only_exp = {snapshot_file(store, n, applied.new[n]) for n in applied.executed}
    young_orphan = snapshots / "transform" / "enriched" / "young.parquet"
    shutil.copyfile(
        snapshot_file(store, "transform.enriched", applied.old["transform.enriched"]), young_orphan
    )
    age([p for p in snapshots.rglob("*.parquet") if p != young_orphan])
    assert "Expired" in seeknal(shop, "env", "list").stdout

    result = seeknal(shop, "env", "gc")

    assert result.returncode == 0, result.stderr
    assert "Removed 1 expired environment(s) and 2 unused snapshot(s)" in result.stdout
    assert not (shop / "target" / "environments" / "exp").exists()
    assert (shop / "target" / "environments" / "fresh" / "env_config.json").exists()
    assert not any(p.exists() for p in only_exp)
    assert young_orphan.exists()
    assert_production_consistent(shop)


def test_env_gc_keeps_snapshots_of_rollback_points(shop, seeknal, applied):
    assert seeknal(shop, "promote", "exp").returncode == 0
    assert seeknal(shop, "rollback").returncode == 0  # exp's outputs: only a roll-forward point
    expire(shop, "exp")
    store = Store(shop / "target")
    old_orphan = shop / "target" / "snapshots" / "source" / "orders" / "orphan.parquet"
    shutil.copyfile(snapshot_file(store, "source.orders", applied.old["source.orders"]), old_orphan)
    age(list((shop / "target" / "snapshots").rglob("*.parquet")))

    result = seeknal(shop, "env", "gc")

    assert result.returncode == 0, result.stderr
    assert "Removed 1 expired environment(s) and 1 unused snapshot(s)" in result.stdout
    assert not old_orphan.exists()
    assert all(snapshot_file(store, n, applied.new[n]).exists() for n in applied.executed)
    assert seeknal(shop, "rollback").returncode == 0  # roll forward still works after gc
    assert fingerprints(shop) == applied.new
    assert_production_consistent(shop)
