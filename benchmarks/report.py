"""What the benchmark reports: the machine, the figures against their targets, the table, the JSON.

The figures arrive as one results document (plain dicts and lists, as written to JSON); this
module only reads it, so a saved `latest.json` can be rendered again with `render(document)`.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import statistics
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from procs import Sample

SCHEMA_VERSION = 1
MB = 1024 * 1024
GB = 1024 * MB
ONE_MILLION = 1_000_000
FIVE_MILLION = 5_000_000
PASS, MISS, NOT_APPLICABLE = "PASS", "MISS", "n/a"


# --- machine ---------------------------------------------------------------------------------


def machine(repo: Path) -> dict[str, object]:
    """Cores, memory, CPU model, versions and the commit measured, for the header and the JSON."""
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)),
        "memory_gb": round(_meminfo_kb("MemTotal") / 1024 / 1024, 1),
        "cpu_model": _cpu_model(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "platform": platform.platform(),
        "python": platform.python_version(),
        "duckdb": _version("duckdb"),
        "dagster": _version("dagster"),
        "sqlglot": _version("sqlglot"),
        "seeknal_dagster": _version("seeknal-dagster"),
        # NOTE: with this set, modules without cached bytecode are compiled on every start.
        "python_dont_write_bytecode": bool(os.environ.get("PYTHONDONTWRITEBYTECODE")),
        "commit": _git(repo, "rev-parse", "--short", "HEAD"),
        "uncommitted_changes": bool(_git(repo, "status", "--porcelain", "--untracked-files=no")),
    }


def _meminfo_kb(field: str) -> int:
    with open("/proc/meminfo") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _git(repo: Path, *args: str) -> str:
    try:
        done = subprocess.run(
            ["git", "-C", str(repo), *args], capture_output=True, text=True, check=True
        )
    except (OSError, subprocess.CalledProcessError):
        return ""
    return done.stdout.strip()


# --- series ----------------------------------------------------------------------------------


def series(samples: Sequence[Sample]) -> dict[str, object]:
    """Repeated samples of one command as stored in the JSON, with their medians."""
    walls = [round(s.wall_s, 4) for s in samples]
    rss = [round(s.peak_rss_bytes / MB, 1) for s in samples]
    largest = [round(s.peak_process_rss_bytes / MB, 1) for s in samples]
    cpu = [round(s.cpu_s, 3) for s in samples]
    return {
        "wall_s": walls,
        "cpu_s": cpu,
        "peak_rss_mb": rss,
        "peak_process_rss_mb": largest,
        "processes": [s.processes for s in samples],
        "median_wall_s": round(statistics.median(walls), 4),
        "median_cpu_s": round(statistics.median(cpu), 3),
        "median_peak_rss_mb": round(statistics.median(rss), 1),
        "median_peak_process_rss_mb": round(statistics.median(largest), 1),
    }


# --- targets ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Check:
    """One figure next to its target."""

    figure: str
    value: float
    unit: str  # "x" (ratio), "s", "ms", "MB" or "%"
    target: str
    status: str


def _check(figure: str, value: float, unit: str, limit: float | None, where: str = "") -> Check:
    """PASS/MISS against `value <= limit`; n/a when the target does not apply (`limit` None)."""
    if limit is None:
        return Check(figure, value, unit, where, NOT_APPLICABLE)
    target = f"<= {_number(limit, unit)}"
    return Check(figure, value, unit, target, PASS if value <= limit else MISS)


def checks(document: dict) -> list[Check]:
    """Every figure the issue sets a target for, evaluated on the results document."""
    found: list[Check] = []
    for row in document.get("fraud", []):
        found.extend(_fraud_checks(row))
    startup = document.get("startup", {})
    for key, label, limit in (
        ("help", "seeknal --help", 0.3),
        ("noop_run", "seeknal run with nothing to do", 0.5),
        ("plan_15", "seeknal plan, 15 nodes", None),
        ("plan_500", "seeknal plan, 500 nodes", 2.0),
    ):
        if key in startup:
            value = startup[key]["median_wall_s"]
            found.append(_check(label, value, "s", limit, "" if limit else "(no target)"))
    found.extend(_environment_checks(document.get("environments", [])))
    overhead = document.get("overhead")
    if overhead:
        for mode, limit in (("sequential", 60.0), ("parallel", 250.0)):
            found.append(
                _check(
                    f"orchestration overhead per node, {mode} ({overhead['nodes']} nodes)",
                    overhead[mode]["overhead_ms_per_node"],
                    "ms",
                    limit,
                )
            )
    return found


def _fraud_checks(row: dict) -> Iterable[Check]:
    n = row["transactions"]
    size = f"{n:,}"
    floor, sequential = row["floor"], row["sequential"]
    wall_limit = {ONE_MILLION: 1.3, FIVE_MILLION: 1.15}.get(n)
    yield _check(
        f"full sequential / floor, wall, N={size}",
        sequential["median_wall_s"] / floor["median_wall_s"],
        "x",
        wall_limit,
        "target at 1M and 5M",
    )
    yield _check(
        f"full sequential / floor, peak RSS, N={size}",
        sequential["median_peak_rss_mb"] / floor["median_peak_rss_mb"],
        "x",
        1.3 if n >= ONE_MILLION else None,
        "target at N >= 1M",
    )
    for mode in ("sequential", "parallel", "parallel_1"):
        if mode in row:
            yield _check(
                f"peak RSS, {_MODE_LABELS[mode]}, N={size}",
                row[mode]["median_peak_rss_mb"],
                "MB",
                2048.0 if n == FIVE_MILLION else None,
                "target at 5M",
            )
    if "parallel" in row:
        yield _check(
            f"--parallel / sequential, wall, N={size}",
            row["parallel"]["median_wall_s"] / sequential["median_wall_s"],
            "x",
            1.25 if n >= ONE_MILLION else None,
            "target at N >= 1M",
        )


def _environment_checks(rows: list[dict]) -> Iterable[Check]:
    for row in rows:
        size = f"{row['transactions']:,}"
        yield _check(
            f"experiment apply / full sequential run, N={size}",
            100.0 * row["apply"]["median_wall_s"] / row["full_sequential_s"],
            "%",
            25.0 if row["transactions"] == ONE_MILLION else None,
            "target at 1M",
        )
        yield _check(f"seeknal promote, N={size}", row["promote"]["median_wall_s"], "s", 0.3)
    if len(rows) >= 2:
        small, large = rows[0], rows[-1]
        yield _check(
            f"promote N={large['transactions']:,} / promote N={small['transactions']:,}",
            large["promote"]["median_wall_s"] / small["promote"]["median_wall_s"],
            "x",
            1.5,
        )


# --- table -----------------------------------------------------------------------------------

_MODE_LABELS = {
    "floor": "floor (one DuckDB process)",
    "sequential": "seeknal run --full",
    "parallel": "--parallel --full",
    "parallel_1": "--parallel --max-workers 1 --full",
}


def _number(value: float, unit: str) -> str:
    if unit == "x":
        return f"{value:.2f}x"
    if unit == "s":
        return f"{value:.2f} s" if value < 100 else f"{value:.0f} s"
    if unit == "%":
        return f"{value:.0f}%"
    return f"{value:,.0f} {unit}"


def render(document: dict) -> str:
    """The results as a plain-text report: header, one block per part, then the targets."""
    lines = _header(document)
    if document.get("fraud"):
        lines += _fraud_block(document["fraud"])
    if document.get("startup"):
        lines += _startup_block(document["startup"])
    if document.get("environments"):
        lines += _environment_block(document["environments"])
    if document.get("overhead"):
        lines += _overhead_block(document["overhead"])
    lines += _targets_block([Check(**c) for c in document.get("targets", [])])
    return "\n".join(lines) + "\n"


def _header(document: dict) -> list[str]:
    m = document["machine"]
    options = document["options"]
    dirty = " + uncommitted changes" if m["uncommitted_changes"] else ""
    end = m.get("load_average_at_end")
    lines = [
        f"seeknal-dagster benchmark, {m['date']}",
        f"  machine:  {m['cores']} cores ({m['usable_cores']} usable), {m['cpu_model']}, "
        f"{m['memory_gb']} GB RAM, load {m['load_average_at_start'][0]} at start"
        + (f", {end[0]} at end" if end else ""),
        f"  software: Python {m['python']}, DuckDB {m['duckdb']}, Dagster {m['dagster']}, "
        f"sqlglot {m['sqlglot']}, seeknal-dagster {m['seeknal_dagster']} at "
        f"{m['commit'] or '?'}{dirty}",
        f"  figures:  medians of {options['repeats']} repeat(s) (start-up: "
        f"{options['startup_repeats']}); peak RSS = largest sum of VmRSS over the process tree; "
        "CPU = user + system time of the process tree",
    ]
    if m.get("python_dont_write_bytecode"):
        lines.append(
            "  warning:  PYTHONDONTWRITEBYTECODE is set, so modules without cached bytecode "
            "are compiled at every start (start-up figures are pessimistic)"
        )
    return [*lines, ""]


def _fraud_block(rows: list[dict]) -> list[str]:
    lines = [
        "1. Fraud example, 15 nodes: wall time and peak RSS, and their ratio to the floor",
        f"  {'transactions':>12}  {'command':<36}{'wall':>10}{'x floor':>9}"
        f"{'peak RSS':>11}{'x floor':>9}{'CPU':>10}",
    ]
    for row in rows:
        floor = row["floor"]
        for index, mode in enumerate(m for m in _MODE_LABELS if m in row):
            figures = row[mode]
            size = f"{row['transactions']:,}" if index == 0 else ""
            lines.append(
                f"  {size:>12}  {_MODE_LABELS[mode]:<36}"
                f"{_number(figures['median_wall_s'], 's'):>10}"
                f"{figures['median_wall_s'] / floor['median_wall_s']:>8.2f}x"
                f"{_number(figures['median_peak_rss_mb'], 'MB'):>11}"
                f"{figures['median_peak_rss_mb'] / floor['median_peak_rss_mb']:>8.2f}x"
                f"{_number(figures['median_cpu_s'], 's'):>10}"
            )
    return [*lines, ""]


def _startup_block(startup: dict) -> list[str]:
    labels = {
        "help": "seeknal --help",
        "noop_run": "seeknal run, nothing to do (15 nodes)",
        "plan_15": "seeknal plan, 15 nodes",
        "plan_500": "seeknal plan, 500 nodes (synthetic)",
    }
    lines = ["2. Start-up and no-op"]
    for key, label in labels.items():
        if key in startup:
            figures = startup[key]
            lines.append(
                f"  {label:<50}{_number(figures['median_wall_s'], 's'):>10}"
                f"{_number(figures['median_peak_rss_mb'], 'MB'):>11}"
                f"{_number(figures['median_cpu_s'], 's'):>10} CPU"
            )
    return [*lines, ""]


def _environment_block(rows: list[dict]) -> list[str]:
    lines = ["3. Environments: the tutorial's experiment (ip_reputation_score becomes a feature)"]
    for row in rows:
        full = row["full_sequential_s"]
        lines.append(f"  N={row['transactions']:,} (full sequential run {_number(full, 's')})")
        for key, label in (
            ("plan", "seeknal plan experiment"),
            ("apply", "seeknal run --env experiment"),
            ("promote", "seeknal promote experiment"),
        ):
            wall = row[key]["median_wall_s"]
            lines.append(
                f"    {label:<48}{_number(wall, 's'):>10}{100 * wall / full:>7.1f}% of full run"
                f"{_number(row[key]['median_cpu_s'], 's'):>10} CPU"
            )
    return [*lines, ""]


def _overhead_block(overhead: dict) -> list[str]:
    n = overhead["nodes"]
    lines = [
        f"4. Orchestration overhead: {n} trivial nodes (one tiny source, SELECT * transforms)",
        f"  {'command':<36}{'wall':>10}{'CPU':>10}{'per node':>11}{'overhead/node':>16}",
    ]
    for mode in ("floor", "sequential", "parallel"):
        figures = overhead[mode]
        per_node = 1000 * figures["median_wall_s"] / n
        extra = figures.get("overhead_ms_per_node")
        overhead_text = "" if extra is None else f"{extra:>13.0f} ms"
        lines.append(
            f"  {_MODE_LABELS[mode]:<36}{_number(figures['median_wall_s'], 's'):>10}"
            f"{_number(figures['median_cpu_s'], 's'):>10}{per_node:>8.0f} ms{overhead_text}"
        )
    lines.append("  overhead/node = (wall - floor wall) / nodes")
    return [*lines, ""]


def _targets_block(found: list[Check]) -> list[str]:
    lines = ["Targets", f"  {'figure':<58}{'value':>10}  {'target':<22}status"]
    for check in found:
        lines.append(
            f"  {check.figure:<58}{_number(check.value, check.unit):>10}  {check.target:<22}"
            f"{check.status}"
        )
    missed = sum(1 for c in found if c.status == MISS)
    passed = sum(1 for c in found if c.status == PASS)
    lines.append(f"  {passed} passed, {missed} missed")
    return lines


# --- JSON ------------------------------------------------------------------------------------


def finish(document: dict) -> dict:
    """Adds the evaluated targets to the document."""
    document["targets"] = [asdict(c) for c in checks(document)]
    return document


def write(document: dict, folder: Path, stamp: str) -> Path:
    """Writes `<stamp>.json` and `latest.json` atomically; returns the first."""
    folder.mkdir(parents=True, exist_ok=True)
    text = json.dumps({"schema_version": SCHEMA_VERSION, **document}, indent=1) + "\n"
    written = folder / f"{stamp}.json"
    for path in (written, folder / "latest.json"):
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        with open(tmp, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    return written


def read(path: Path) -> dict:
    """A results document written by `write`.

    Raises:
        ValueError: the file has another schema version.
    """
    document = json.loads(path.read_text())
    found = document.get("schema_version")
    if found != SCHEMA_VERSION:
        raise ValueError(
            f"{path}: results schema_version {found!r}, this harness reads {SCHEMA_VERSION}. "
            "Fix: re-run the benchmark to write a current file"
        )
    return document
