"""The projects the benchmark runs: copies of the fraud example and generated synthetic projects.

Fraud data is generated once per size into `benchmarks/results/data/<N>/` and hard-linked into
each project copy (copied where links are impossible), so every copy has its own `target/` and
reads its sources from inside its own folder, as the product requires.
"""

from __future__ import annotations

import csv
import json
import os
import random
import shutil
import subprocess
import sys
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "examples" / "fraud_detection"
GENERATOR = EXAMPLE / "generate_data.py"
EXPERIMENT_FILE = "seeknal/feature_groups/13_feature_group_txn_features.yml"
EXPERIMENT_FEATURE = "  ip_reputation_score: {dtype: float}\n"
_MARKER = "complete.json"
_MARKER_VERSION = 1


# --- fraud example ---------------------------------------------------------------------------


def fraud_data(cache: Path, transactions: int) -> Path:
    """The folder of the example's CSVs for `transactions`, generated on first use.

    The cache is trusted when its marker names the same size and DuckDB version (the generator's
    output depends only on both).
    """
    import duckdb

    folder = cache / str(transactions)
    marker = folder / _MARKER
    expected = {
        "schema_version": _MARKER_VERSION,
        "transactions": transactions,
        "duckdb": duckdb.__version__,
    }
    if marker.is_file():
        found = json.loads(marker.read_text())
        if all(found.get(key) == value for key, value in expected.items()):
            return folder

    marker.unlink(missing_ok=True)
    subprocess.run(
        [sys.executable, str(GENERATOR), "--transactions", str(transactions), "--out", str(folder)],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    _write_json(marker, expected)
    return folder


def copy_fraud_project(destination: Path, data: Path) -> Path:
    """A copy of the example's YAML at `destination` with `data/` linked to cached CSVs."""
    shutil.copytree(
        EXAMPLE,
        destination,
        ignore=shutil.ignore_patterns("data", "target", "output", "__pycache__"),
    )
    (destination / "data").mkdir()
    for csv_file in sorted(data.glob("*.csv")):
        link_or_copy(csv_file, destination / "data" / csv_file.name)
    return destination


def add_experiment_feature(project: Path) -> None:
    """The tutorial's experiment: declare `ip_reputation_score` as a feature of txn_features."""
    path = project / EXPERIMENT_FILE
    text = path.read_text()
    if text.count("\nfeatures:\n") != 1:
        raise ValueError(
            f"{path}: expected one top-level `features:` block to add the experiment's feature "
            "to. Fix: update benchmarks/workloads.py to the file's new layout"
        )
    path.write_text(text.replace("\nfeatures:\n", "\nfeatures:\n" + EXPERIMENT_FEATURE))


def remove_experiment_feature(project: Path) -> None:
    path = project / EXPERIMENT_FILE
    path.write_text(path.read_text().replace(EXPERIMENT_FEATURE, ""))


# --- files -----------------------------------------------------------------------------------


def link_or_copy(source: Path, destination: Path) -> None:
    """Hard-links `source` to `destination`, copying when the file system refuses."""
    try:
        os.link(source, destination)
    except OSError:
        shutil.copy2(source, destination)


def clone_tree(source: Path, destination: Path) -> None:
    """Copies a `target/` folder cheaply: parquet files are hard-linked, symlinks stay symlinks.

    NOTE: sharing parquet inodes is safe because the product never writes a parquet file in
    place (every write goes to a temporary file and is renamed). Everything else (JSON, the
    Dagster SQLite files) is copied, since those are rewritten in place.
    """
    shutil.rmtree(destination, ignore_errors=True)

    def _copy(src: str, dst: str) -> None:
        if src.endswith(".parquet"):
            link_or_copy(Path(src), Path(dst))
        else:
            shutil.copy2(src, dst)

    shutil.copytree(source, destination, symlinks=True, copy_function=_copy)


def _write_json(path: Path, document: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(document, indent=1) + "\n")
    os.replace(tmp, path)


# --- synthetic projects ----------------------------------------------------------------------

_COLUMNS = """columns:
  entity_id: {type: integer, description: Entity the event belongs to}
  event_ts: {type: timestamp, description: Time of the event}
  amount: {type: double, description: Amount in USD}
  category: {type: string, description: Category of the event}
  score: {type: double, description: Score between 0 and 1}
"""
_CATEGORIES = ["retail", "travel", "dining", "fuel", "online", "grocery", "health"]

# Transform bodies by number of inputs; {a}, {b}, {c} are the inputs' node ids. Every node
# yields the same five columns, so any node can feed any template.
_ONE_INPUT = [
    """SELECT
    entity_id,
    event_ts,
    round(amount * 1.07, 2) AS amount,
    upper(category) AS category,
    CASE WHEN score > 0.8 THEN score * 0.9 ELSE score END AS score
FROM {a}
WHERE amount IS NOT NULL AND event_ts >= TIMESTAMP '2024-01-01'
""",
    """SELECT
    entity_id,
    event_ts,
    sum(amount) OVER recent AS amount,
    category,
    avg(score) OVER recent AS score
FROM {a}
WINDOW recent AS (
    PARTITION BY entity_id ORDER BY event_ts ROWS BETWEEN 5 PRECEDING AND CURRENT ROW
)
""",
    """WITH daily AS (
    SELECT
        entity_id,
        date_trunc('day', event_ts) AS day,
        category,
        sum(amount) AS amount,
        max(score) AS score
    FROM {a}
    GROUP BY entity_id, date_trunc('day', event_ts), category
)
SELECT entity_id, CAST(day AS TIMESTAMP) AS event_ts, amount, category, score
FROM daily
""",
]
_TWO_INPUTS = [
    """WITH other AS (
    SELECT entity_id, avg(score) AS avg_score, count(*) AS events
    FROM {b}
    GROUP BY entity_id
)
SELECT
    l.entity_id,
    l.event_ts,
    l.amount * (1 + coalesce(o.events, 0) / 100.0) AS amount,
    l.category,
    coalesce((l.score + o.avg_score) / 2, l.score) AS score
FROM {a} l
LEFT JOIN other o ON o.entity_id = l.entity_id
""",
    """SELECT
    l.entity_id,
    l.event_ts,
    l.amount,
    coalesce(r.category, l.category) AS category,
    greatest(l.score, coalesce(r.score, 0)) AS score
FROM {a} l
ASOF LEFT JOIN {b} r
    ON r.entity_id = l.entity_id
   AND l.event_ts >= r.event_ts
""",
]
_THREE_INPUTS = [
    """WITH unioned AS (
    SELECT entity_id, event_ts, amount, category, score FROM {a}
    UNION ALL
    SELECT entity_id, event_ts, amount, category, score FROM {b}
    UNION ALL
    SELECT entity_id, event_ts, amount, category, score FROM {c}
)
SELECT
    entity_id,
    max(event_ts) AS event_ts,
    sum(amount) AS amount,
    min(category) AS category,
    avg(score) AS score
FROM unioned
GROUP BY entity_id
""",
    """SELECT
    x.entity_id,
    x.event_ts,
    x.amount + coalesce(y.total, 0) AS amount,
    x.category,
    (x.score + coalesce(z.best, x.score)) / 2 AS score
FROM {a} x
LEFT JOIN (SELECT entity_id, sum(amount) AS total FROM {b} GROUP BY entity_id) y
    ON y.entity_id = x.entity_id
LEFT JOIN (SELECT entity_id, max(score) AS best FROM {c} GROUP BY entity_id) z
    ON z.entity_id = x.entity_id
""",
]


def synthetic_project(
    root: Path, sources: int, transforms: int, rows: int = 200, seed: int = 7
) -> Path:
    """A project of `sources` CSV sources and `transforms` transforms of 1-3 recent upstream nodes.

    The SQL is varied (filters, windows, CTEs with aggregates, joins, ASOF joins, unions) and
    every node yields the same five columns, so the project validates and runs.
    """
    rng = random.Random(seed)
    _start(root, f"synthetic_{sources + transforms}")
    nodes = [_source(root, f"src_{index:03d}", rows, rng) for index in range(sources)]
    for index in range(transforms):
        window = nodes[-60:]
        count = min(len(window), rng.choice([1, 1, 2, 2, 2, 3]))
        chosen = rng.sample(window, count)
        template = rng.choice([_ONE_INPUT, _TWO_INPUTS, _THREE_INPUTS][count - 1])
        sql = template.format(**dict(zip("abc", chosen, strict=False)))
        nodes.append(_transform(root, f"t_{index:03d}", chosen, sql))
    return root


def tree_project(root: Path, transforms: int, rows: int = 20) -> Path:
    """One tiny source and `transforms` trivial transforms, node k reading node (k - 1) // 2.

    The binary tree gives parallel runs independent steps to overlap, as real projects do.
    """
    rng = random.Random(0)
    _start(root, f"trivial_{transforms + 1}")
    nodes = [_source(root, "seed", rows, rng)]
    for index in range(1, transforms + 1):
        parent = nodes[(index - 1) // 2]
        nodes.append(_transform(root, f"step_{index:03d}", [parent], f"SELECT * FROM {parent}\n"))
    return root


def _start(root: Path, name: str) -> None:
    (root / "seeknal" / "sources").mkdir(parents=True)
    (root / "seeknal" / "transforms").mkdir(parents=True)
    (root / "data").mkdir()
    (root / "seeknal_project.yml").write_text(f"name: {name}\nversion: '1.0'\n")


def _source(root: Path, name: str, rows: int, rng: random.Random) -> str:
    start = datetime(2024, 1, 1)
    with open(root / "data" / f"{name}.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["entity_id", "event_ts", "amount", "category", "score"])
        for _ in range(rows):
            writer.writerow(
                [
                    rng.randint(1, max(1, rows // 4)),
                    (start + timedelta(seconds=rng.randint(0, 90 * 86400))).isoformat(" "),
                    round(rng.lognormvariate(3.5, 1.0), 2),
                    rng.choice(_CATEGORIES),
                    round(rng.random(), 4),
                ]
            )
    (root / "seeknal" / "sources" / f"{name}.yml").write_text(
        f"kind: source\nname: {name}\ndescription: Synthetic events {name}\nsource: csv\n"
        f"table: data/{name}.csv\nparams:\n  delimiter: ','\n  header: true\n{_COLUMNS}"
    )
    return f"source.{name}"


def _transform(root: Path, name: str, inputs: Sequence[str], sql: str) -> str:
    refs = "".join(f"  - ref: {ref}\n" for ref in inputs)
    body = "".join(f"  {line}\n" if line else "\n" for line in sql.splitlines())
    (root / "seeknal" / "transforms" / f"{name}.yml").write_text(
        f"kind: transform\nname: {name}\ndescription: Synthetic step {name}\n"
        f"inputs:\n{refs}transform: |\n{body}"
    )
    return f"transform.{name}"
