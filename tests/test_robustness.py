"""Bad data, hostile names and damaged or unwritable state through the real CLI: every failure is
one clear message (file, key or node, what was wrong, how to fix it), exit status 1, no
traceback, and production exactly as it was."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import cache_file as cache
from conftest import parquet_rows as rows
from conftest import run_seeknal, snapshot_target

from seeknal_dagster.storage import PROD, Store

ORDERS_CSV = "order_id,customer,amount\n1,ann,9.5\n2,bob,3.0\n3,ann,4.25\n"
ORDERS = """\
kind: source
name: orders
source: csv
table: data/orders.csv
columns:
  order_id: integer
  amount: double
"""
TOTALS = """\
kind: transform
name: totals
inputs: [{ref: source.orders}]
transform: SELECT customer, sum(amount) AS total FROM source.orders GROUP BY customer
"""
REPORT = """\
kind: exposure
name: report
type: file
path: output/report.csv
inputs: [{ref: transform.totals}]
"""
LATE = 30_000


def shop(files: dict[str, str | bytes] | None = None) -> dict[str, str | bytes]:
    """source.orders -> transform.totals -> exposure.report, with `files` added or replaced."""
    return {
        "data/orders.csv": ORDERS_CSV,
        "seeknal/sources/orders.yml": ORDERS,
        "seeknal/transforms/totals.yml": TOTALS,
        "seeknal/exposures/report.yml": REPORT,
        **(files or {}),
    }


def production(root: Path) -> dict[str, object]:
    """What production is: its pointer file, its cache links and the bytes behind them, and the
    exported files. Dagster's own run records under target/dagster are not production."""
    target = root / "target"
    view: dict[str, object] = {}
    state = target / "state" / "prod.json"
    view["state"] = state.read_bytes() if state.exists() else None
    for link in sorted((target / "cache").glob("*/*.parquet")):
        data = link.read_bytes() if link.exists() else None
        view[link.relative_to(target).as_posix()] = (os.readlink(link), data)
    for path in sorted((root / "output").rglob("*")):
        view[path.relative_to(root).as_posix()] = path.read_bytes()
    return view


def fails_cleanly(result: subprocess.CompletedProcess, *words: str) -> str:
    """Exit status 1, every word in the error output, no traceback. Returns stderr."""
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    for word in words:
        assert word in result.stderr, f"{word!r} not in:\n{result.stderr}"
    assert "Fix:" in result.stderr, result.stderr
    return result.stderr


def statuses(result: subprocess.CompletedProcess) -> dict[str, str]:
    return {n["node"]: n["status"] for n in json.loads(result.stdout)["nodes"]}


@pytest.fixture(scope="module")
def shop_built(tmp_path_factory) -> Path:
    """The shop project after one successful `seeknal run` (built once, copied by `built`)."""
    root = tmp_path_factory.mktemp("template") / "shop"
    for relative, content in {"seeknal_project.yml": "name: shop\n", **shop()}.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
    result = run_seeknal(root, "run")
    assert result.returncode == 0, result.stdout + result.stderr
    return root


@pytest.fixture
def built(shop_built, tmp_path, seeknal):
    """`built()`: a fresh copy of the shop project after one successful `seeknal run`."""
    count = 0

    def build() -> Path:
        nonlocal count
        count += 1
        root = tmp_path / f"built{count}"
        shutil.copytree(shop_built, root, symlinks=True)
        # Caches keyed by absolute path are refreshed by a run that writes nothing else.
        assert "Would execute: 0" in seeknal(root, "run", "--dry-run").stdout
        return root

    return build


# --- CSV traps, through `seeknal run` --------------------------------------------------------------


def late(value: str, column: str = "amount") -> str:
    """orders.csv whose bad `value` comes after the rows DuckDB samples to guess types."""
    body = "".join(f"{i},c{i % 7},{i}.5\n" for i in range(1, LATE))
    line = {"order_id": f"{value},ann,1.5", "amount": f"{LATE},ann,{value}"}[column]
    return f"order_id,customer,amount\n{body}{line}\n"


UNDECLARED = "kind: source\nname: orders\nsource: csv\ntable: data/orders.csv\n"
CSV_TRAPS = {
    "late-text-in-declared-double": (
        late("n/a"),
        ORDERS,
        ["[columns.amount]", "'n/a'", f"line {LATE + 1}", "DOUBLE"],
    ),
    "late-fraction-in-declared-integer": (
        late("7.5", "order_id"),
        ORDERS,
        ["[columns.order_id]", "'7.5'", f"row {LATE}", "INTEGER"],
    ),
    "late-fraction-in-detected-integer": (
        late("7.5", "order_id"),
        UNDECLARED,
        ["[columns.order_id]", "'7.5'", f"row {LATE}", "detected from the first rows"],
    ),
    "late-text-in-detected-integer": (
        late("x12", "order_id"),
        UNDECLARED,
        ["[columns.order_id]", "'x12'", f"row {LATE}"],
    ),
    "late-short-row": (
        late("").replace(f"{LATE},ann,\n", f"{LATE},ann\n"),
        ORDERS,
        [f"line {LATE + 1}", "Expected Number of Columns: 3 Found: 2"],
    ),
    "empty-file": ("", ORDERS, ["data/orders.csv is empty (0 bytes)", "header line"]),
    "blank-file": ("\n\n", ORDERS, ["data/orders.csv has only blank lines"]),
    "declared-column-missing": (
        "order_id,customer,amount_eur\n1,ann,2.0\n",
        ORDERS,
        ["declared column(s) amount not found", "the file has: order_id, customer, amount_eur"],
    ),
    "semicolon-separated": (
        "order_id;customer;amount\n1;ann;2.0\n",
        UNDECLARED,
        ["[params.delimiter]", "one column named 'order_id;customer;amount'", 'delimiter: ";"'],
    ),
    "title-line-above-header": (
        "Orders export 2024\n" + ORDERS_CSV,
        ORDERS,
        ["line 2 of data/orders.csv", "Expected Number of Columns: 1", "skip"],
    ),
    "latin-1-encoded": (
        "order_id,customer,amount\n1,Jos\xe9,2.0\n".encode("latin-1"),
        ORDERS,
        ["data/orders.csv", "UTF-8"],
    ),
    "header-false-columns-miscounted": (
        "1,ann,2.0\n",
        ORDERS.replace("columns:", "params: {header: false}\ncolumns:"),
        ["has 3 column(s) but `columns:` lists 2", "header: false"],
    ),
    "unterminated-quote": (
        'order_id,customer,amount\n1,"ann,2.0\n2,bob,3.0\n',
        ORDERS,
        ["data/orders.csv"],
    ),
}


@pytest.mark.parametrize("case", list(CSV_TRAPS))
def test_csv_trap_fails_the_source_and_keeps_production(built, seeknal, case: str) -> None:
    data, node, words = CSV_TRAPS[case]
    root = built()
    before = production(root)
    (root / "data" / "orders.csv").write_bytes(data if isinstance(data, bytes) else data.encode())
    (root / "seeknal" / "sources" / "orders.yml").write_text(node)

    result = seeknal(root, "run")

    fails_cleanly(result, "source.orders", "seeknal/sources/orders.yml", *words)
    assert "skipped because an upstream node failed: transform.totals" in result.stderr
    assert production(root) == before


def test_csv_header_false_keeps_first_row_end_to_end(make_project, seeknal) -> None:
    declared = "columns:\n  order_id: integer\n  customer: string\n  amount: double\n"
    node = ORDERS.split("columns:")[0] + "params: {header: false}\n" + declared
    root = make_project(
        shop({"data/orders.csv": "1,ann,9.5\n2,bob,3.0\n", "seeknal/sources/orders.yml": node})
    )

    result = seeknal(root, "run")

    assert result.returncode == 0, result.stderr
    assert rows(cache(root, "transform.totals")) == [("ann", 9.5), ("bob", 3.0)]


def test_csv_bom_crlf_and_embedded_newlines_end_to_end(make_project, seeknal) -> None:
    data = b'\xef\xbb\xbforder_id,customer,amount\r\n1,"ann\r\nsmith",9.5\r\n2,"bob, jr",3.0\r\n'
    root = make_project(shop({"data/orders.csv": data}))

    result = seeknal(root, "run")

    assert result.returncode == 0, result.stderr
    assert rows(cache(root, "source.orders")) == [(1, "ann\r\nsmith", 9.5), (2, "bob, jr", 3.0)]
    assert rows(cache(root, "source.orders"), "SELECT column_name FROM (DESCRIBE t)")[0] == (
        "order_id",
    )


def test_csv_header_only_runs_to_zero_rows_with_types(make_project, seeknal) -> None:
    root = make_project(shop({"data/orders.csv": "order_id,customer,amount\n"}))

    result = seeknal(root, "run")

    assert result.returncode == 0, result.stderr
    described = rows(
        cache(root, "source.orders"), "SELECT column_name, column_type FROM (DESCRIBE t)"
    )
    assert described == [("order_id", "INTEGER"), ("customer", "VARCHAR"), ("amount", "DOUBLE")]
    assert rows(cache(root, "transform.totals")) == []


def test_csv_path_with_single_quote_runs(make_project, seeknal) -> None:
    node = ORDERS.replace("data/orders.csv", "data/o'brien.csv")
    root = make_project(shop({"data/o'brien.csv": ORDERS_CSV, "seeknal/sources/orders.yml": node}))
    (root / "data" / "orders.csv").unlink()

    result = seeknal(root, "run")

    assert result.returncode == 0, result.stderr
    assert rows(cache(root, "transform.totals")) == [("ann", 13.75), ("bob", 3.0)]


# --- names and paths that could escape or inject -------------------------------------------------


@pytest.mark.parametrize(
    "name",
    ["'../escape'", "a/b", "\"x''y\"", "'x;DROP TABLE t'", "a.b", "'x\"y'", "'..'", "'x--'"],
)
def test_node_name_that_could_escape_or_inject_is_rejected(
    make_project, seeknal, name: str
) -> None:
    node = TOTALS.replace("name: totals", f"name: {name}")
    root = make_project(
        shop({"seeknal/transforms/totals.yml": node, "seeknal/exposures/report.yml": ""})
    )
    (root / "seeknal" / "exposures" / "report.yml").unlink()
    before = snapshot_target(root)

    result = seeknal(root, "validate")

    fails_cleanly(result, "seeknal/transforms/totals.yml [name]", "invalid name")
    assert snapshot_target(root) == before


def test_node_kind_with_path_characters_is_rejected(make_project, seeknal) -> None:
    node = TOTALS.replace("kind: transform", "kind: ../transform")
    root = make_project(shop({"seeknal/transforms/totals.yml": node}))

    result = seeknal(root, "validate")

    fails_cleanly(result, "[kind]", "unknown kind")
    assert snapshot_target(root) is None


def test_input_ref_with_sql_is_an_unknown_node(make_project, seeknal) -> None:
    node = TOTALS.replace("ref: source.orders", "ref: 'source.orders; DROP TABLE x'")
    root = make_project(shop({"seeknal/transforms/totals.yml": node}))

    result = seeknal(root, "validate")

    fails_cleanly(result, "[inputs]", "source.orders; DROP TABLE x")
    assert snapshot_target(root) is None


def test_data_folder_linked_outside_the_project_is_rejected(make_project, seeknal) -> None:
    root = make_project(shop())
    outside = root.parent / "elsewhere"
    shutil.move(root / "data", outside)
    (root / "data").symlink_to(outside, target_is_directory=True)

    result = seeknal(root, "run")

    fails_cleanly(result, "seeknal/sources/orders.yml [table]", "leads outside the project")
    assert snapshot_target(root) is None


def test_export_folder_linked_outside_the_project_is_rejected(make_project, seeknal) -> None:
    root = make_project(shop())
    outside = root.parent / "exports"
    outside.mkdir()
    (root / "output").symlink_to(outside, target_is_directory=True)

    result = seeknal(root, "run")

    fails_cleanly(result, "seeknal/exposures/report.yml [path]", "leads outside the project")
    assert list(outside.iterdir()) == []
    assert snapshot_target(root) is None


@pytest.mark.parametrize(
    "command",
    [
        ("plan", "../escape"),
        ("plan", "Dev"),
        ("plan", "a;b"),
        ("plan", "a" * 64),
        ("env", "plan", "x/../../y"),
        ("run", "--env", "../escape"),
        ("env", "apply", "a/b"),
        ("promote", "../escape"),
        ("promote", "dev", "../escape"),
        ("rollback", "../escape"),
        ("env", "delete", "../escape"),
    ],
)
def test_environment_name_that_could_escape_is_refused(
    built, seeknal, command: tuple[str, ...]
) -> None:
    root = built()
    before = snapshot_target(root)
    around = sorted(p.name for p in root.parent.iterdir())

    result = seeknal(root, *command)

    fails_cleanly(result, "invalid environment name")
    assert snapshot_target(root) == before
    assert sorted(p.name for p in root.parent.iterdir()) == around


# --- damaged snapshots are rebuilt, never read ----------------------------------------------------


def damage(path: Path, truncate: bool = False) -> None:
    data = bytearray(path.read_bytes())
    if truncate:
        del data[len(data) // 2 :]
    else:
        for index in range(len(data) // 3, len(data) // 3 + 8):
            data[index] ^= 0x5A
    stat = path.stat()
    path.write_bytes(bytes(data))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))


@pytest.mark.parametrize("truncate", [False, True], ids=["flipped-bytes", "truncated"])
def test_damaged_snapshot_is_rebuilt_with_its_descendants(built, seeknal, truncate: bool) -> None:
    root = built()
    expected = rows(cache(root, "transform.totals"))
    snapshot = cache(root, "transform.totals").resolve()
    size = snapshot.stat().st_size
    damage(snapshot, truncate)
    assert (snapshot.stat().st_size == size) is not truncate

    result = seeknal(root, "--format", "json", "run")

    assert result.returncode == 0, result.stderr
    assert statuses(result) == {
        "source.orders": "CACHED",
        "transform.totals": "SUCCESS",
        "exposure.report": "SUCCESS",
    }
    assert rows(cache(root, "transform.totals")) == expected
    assert "Nothing to do" in seeknal(root, "run").stdout


# --- damaged state files: a clear error, and the advice works -------------------------------------


@pytest.mark.parametrize(
    "content",
    ['{"schema_version": 1, "version": 3, "nod', "", "[]", '{"schema_version": 1}'],
    ids=["truncated", "empty", "not-an-object", "no-nodes"],
)
@pytest.mark.parametrize("command", [("run",), ("plan", "dev"), ("diff",), ("run", "--dry-run")])
def test_damaged_pointer_file_is_a_clear_error(
    built, seeknal, content: str, command: tuple[str, ...]
) -> None:
    root = built()
    pointer_file = root / "target" / "state" / "prod.json"
    pointer_file.write_text(content)
    before = snapshot_target(root)

    result = seeknal(root, *command)

    fails_cleanly(result, f"pointer file {pointer_file} is corrupt", "seeknal run --full")
    assert snapshot_target(root) == before


def test_damaged_pointer_file_advice_recovers_production(built, seeknal) -> None:
    root = built()
    expected = rows(cache(root, "transform.totals"))
    pointer_file = root / "target" / "state" / "prod.json"
    pointer_file.write_bytes(pointer_file.read_bytes()[:40])
    advice = fails_cleanly(seeknal(root, "run"), "mv ")

    assert f"mv {pointer_file} {pointer_file}.damaged" in advice
    pointer_file.rename(f"{pointer_file}.damaged")
    result = seeknal(root, "run", "--full")

    assert result.returncode == 0, result.stderr
    assert rows(cache(root, "transform.totals")) == expected
    assert "Nothing to do" in seeknal(root, "run").stdout


def test_run_full_alone_recovers_from_damaged_pointer_file(built, seeknal) -> None:
    root = built()
    pointer_file = root / "target" / "state" / "prod.json"
    pointer_file.write_text("{garbage")

    result = seeknal(root, "run", "--full")

    assert result.returncode == 0, result.stderr
    assert list(pointer_file.parent.glob("prod.json.damaged-*"))
    assert Store(root / "target").read_state(PROD).pointers


def test_pointer_to_a_file_outside_target_is_refused(built, seeknal) -> None:
    root = built()
    pointer_file = root / "target" / "state" / "prod.json"
    document = json.loads(pointer_file.read_text())
    document["nodes"]["source.orders"]["snapshot"] = "../data/orders.csv"
    pointer_file.write_text(json.dumps(document))
    before = snapshot_target(root)

    result = seeknal(root, "run")

    fails_cleanly(result, "is corrupt", "not a path inside target/")
    assert snapshot_target(root) == before


def test_pointer_file_of_another_version_is_refused(built, seeknal) -> None:
    root = built()
    pointer_file = root / "target" / "state" / "prod.json"
    document = json.loads(pointer_file.read_text())
    pointer_file.write_text(json.dumps({**document, "schema_version": 7}))
    before = snapshot_target(root)

    result = seeknal(root, "run")

    fails_cleanly(result, "schema_version 7", "reads version 1")
    assert snapshot_target(root) == before


@pytest.mark.parametrize("damaged", ["plan.json", "state.json"])
def test_damaged_environment_file_advice_recovers(built, seeknal, damaged: str) -> None:
    root = built()
    assert seeknal(root, "plan", "dev").returncode == 0
    assert seeknal(root, "run", "--env", "dev").returncode == 0
    (root / "target" / "environments" / "dev" / damaged).write_text("{oops")
    before = production(root)

    advice = fails_cleanly(seeknal(root, "run", "--env", "dev"), "is corrupt", damaged)

    assert "seeknal env delete dev`, then `seeknal plan dev" in advice
    assert production(root) == before
    for command in (("env", "delete", "dev"), ("plan", "dev"), ("run", "--env", "dev")):
        result = seeknal(root, *command)
        assert result.returncode == 0, result.stdout + result.stderr
    assert production(root) == before


# --- target/ that cannot be written ---------------------------------------------------------------


@pytest.mark.parametrize("command", [("run",), ("plan",), ("plan", "dev"), ("promote", "dev")])
def test_target_that_is_a_file_fails_cleanly(make_project, seeknal, command) -> None:
    root = make_project(shop({"target": "a file where the target/ folder should be\n"}))
    before = snapshot_target(root)

    result = seeknal(root, *command)

    fails_cleanly(result, f"{root / 'target'} is a file, not a folder")
    assert (root / "target").read_text() == "a file where the target/ folder should be\n"
    assert snapshot_target(root) == before
    assert not (root / "output").exists()


@pytest.mark.parametrize("folder", ["dagster", "logs"])
def test_target_subfolder_that_is_a_file_fails_cleanly(built, seeknal, folder: str) -> None:
    root = built()
    shutil.rmtree(root / "target" / folder)
    (root / "target" / folder).write_text("in the way\n")
    (root / "data" / "orders.csv").write_text(ORDERS_CSV + "4,cy,1.0\n")
    before = production(root)

    result = seeknal(root, "run")

    fails_cleanly(result, f"{root / 'target' / folder} is a file, not a folder")
    assert production(root) == before


@pytest.mark.skipif(
    hasattr(os, "geteuid") and os.geteuid() == 0, reason="root ignores permission bits"
)
def test_target_without_write_permission_fails_cleanly(built, seeknal) -> None:
    root = built()
    (root / "data" / "orders.csv").write_text(ORDERS_CSV + "4,cy,1.0\n")
    before = snapshot_target(root)
    folders = [p for p in [root / "target", *(root / "target").rglob("*")] if p.is_dir()]
    for folder in folders:
        folder.chmod(0o555)
    try:
        result = seeknal(root, "run")
    finally:
        for folder in folders:
            folder.chmod(0o755)

    fails_cleanly(result, "Permission denied", "writable")
    assert snapshot_target(root) == before


def test_disk_full_while_recording_fails_cleanly_and_keeps_production(built) -> None:
    root = built()
    before = production(root)
    (root / "data" / "orders.csv").write_text(ORDERS_CSV + "4,cy,1.0\n")
    # The real CLI, with every replace of a file under target/state failing as on a full disk.
    injected = (
        "import errno, os\n"
        "real = os.replace\n"
        "def full(source, destination, *args, **kwargs):\n"
        "    if str(destination).endswith('/target/state/prod.json'):\n"
        "        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))\n"
        "    return real(source, destination, *args, **kwargs)\n"
        "os.replace = full\n"
        "from seeknal_dagster.cli import main\n"
        f"main(['--project', {str(root)!r}, 'run'])\n"
    )
    environment = {k: v for k, v in os.environ.items() if k != "DAGSTER_HOME"}
    result = subprocess.run(
        [sys.executable, "-c", injected],
        capture_output=True,
        text=True,
        cwd=root,
        env={**environment, "CI": "true"},
        timeout=300,
    )

    fails_cleanly(
        result,
        "source.orders",
        f"cannot write {root / 'target' / 'state' / 'prod.json'}",
        os.strerror(errno.ENOSPC),
        "free disk space",
    )
    assert production(root) == before


# --- killed at random points ----------------------------------------------------------------------


def check_consistent(root: Path) -> int:
    """The pointer file parses, every pointer's snapshot is complete, every link resolves.

    Returns how many nodes production holds an up-to-date output for.
    """
    from seeknal_dagster.manifest import fingerprints
    from seeknal_dagster.project import load_project

    store = Store(root / "target")
    state = store.read_state(PROD)
    for node_id, pointer in state.pointers.items():
        path = store.target / pointer.snapshot
        assert path.stat().st_size == pointer.bytes, node_id
        assert store.is_current(pointer, pointer.fingerprint), node_id
    for link in (store.target / "cache").glob("*/*.parquet"):
        assert link.exists(), f"dangling link {link}"
        rows(link, "SELECT count(*) FROM t")
    prints = fingerprints(load_project(root))
    return sum(store.is_current(state.pointers.get(n), f) for n, f in prints.items())


def chain(length: int) -> dict[str, str | bytes]:
    """The shop project with `length` more transforms in a row after transform.totals."""
    files = shop()
    previous = "transform.totals"
    for index in range(length):
        files[f"seeknal/transforms/step{index}.yml"] = (
            f"kind: transform\nname: step{index}\ninputs: [{{ref: {previous}}}]\n"
            f"transform: SELECT customer, total + {index} AS total FROM {previous}\n"
        )
        previous = f"transform.step{index}"
    return files


def wait_for_execution(root: Path, process: subprocess.Popen, spawned_ns: int) -> None:
    """Returns once the run has started Dagster (its instance files change), or has ended."""
    folder = root / "target" / "dagster"
    deadline = time.monotonic() + 30
    while process.poll() is None and time.monotonic() < deadline:
        if folder.exists() and any(
            p.stat().st_mtime_ns > spawned_ns for p in folder.rglob("*") if p.is_file()
        ):
            return
        time.sleep(0.02)


@pytest.mark.slow
def test_run_killed_at_random_points_recovers(make_project, seeknal) -> None:
    chooser = random.Random(20260209)
    files = chain(6)
    nodes = sum(1 for relative in files if relative.startswith("seeknal/"))
    root = make_project(files)
    environment = {k: v for k, v in os.environ.items() if k != "DAGSTER_HOME"}
    command = [sys.executable, "-m", "seeknal_dagster.cli", "--project", str(root), "run"]
    data = ORDERS_CSV
    interrupted_midway = 0
    for trial in range(20):
        # Each trial changes the data, so every run has work to do and new snapshots to point at.
        data += f"{trial + 10},c{trial % 3},{trial}.5\n"
        (root / "data" / "orders.csv").write_text(data)
        flags = ["--parallel"] if trial % 4 == 3 else []
        spawned = time.time_ns()
        process = subprocess.Popen(
            command + flags,
            cwd=root,
            env={**environment, "CI": "true"},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        # NOTE: starting Python and Dagster takes seconds; the random delay counts from the
        # start of execution so that kills land among the writes, not before them.
        wait_for_execution(root, process, spawned)
        time.sleep(chooser.uniform(0, 3))
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        current = check_consistent(root)
        interrupted_midway += 0 < current < nodes

    final = seeknal(root, "run")
    reference = make_project({**files, "data/orders.csv": data})
    assert seeknal(reference, "run").returncode == 0

    assert final.returncode == 0, final.stdout + final.stderr
    assert interrupted_midway, "no kill landed between two node writes; the test proved nothing"
    check_consistent(root)
    store = Store(root / "target")
    for node_id, pointer in store.read_state(PROD).pointers.items():
        assert cache(root, node_id).resolve() == (store.target / pointer.snapshot).resolve()
        assert rows(cache(root, node_id)) == rows(cache(reference, node_id)), node_id
    assert (root / "output" / "report.csv").read_bytes() == (
        reference / "output" / "report.csv"
    ).read_bytes()
    assert "Nothing to do" in seeknal(root, "run").stdout


@pytest.mark.slow
def test_ctrl_c_during_a_run_says_interrupted_and_the_next_run_finishes(built) -> None:
    root = built()
    (root / "data" / "orders.csv").write_text(ORDERS_CSV + "4,cy,1.0\n")
    env = {key: value for key, value in os.environ.items() if key != "DAGSTER_HOME"}
    env.update(CI="true", NO_COLOR="1")
    command = [sys.executable, "-m", "seeknal_dagster.cli", "--project", str(root), "run"]
    run = subprocess.Popen(
        command,
        cwd=root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while not (root / "target" / "logs" / "dagster.log").exists() and run.poll() is None:
        assert time.monotonic() < deadline, "the run never started Dagster"
        time.sleep(0.05)
    time.sleep(0.5)  # inside the run, as a person pressing Ctrl-C would be
    os.killpg(run.pid, signal.SIGINT)
    out, err = run.communicate(timeout=120)

    assert "Traceback" not in out + err
    # NOTE: 0 when the run finished before the signal; -SIGINT when it landed while Dagster
    # itself was starting (Dagster re-raises the signal); 130 with our message otherwise.
    assert run.returncode in (0, 130, -signal.SIGINT), out + err
    if run.returncode == 130:
        assert "interrupted" in err and "run the same command again" in err
    again = run_seeknal(root, "run")
    assert again.returncode == 0, again.stderr
    assert "Nothing to do" in run_seeknal(root, "run").stdout
