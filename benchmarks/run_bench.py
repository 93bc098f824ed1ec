"""Benchmark harness: seeknal-dagster's speed and memory as ratios to plain DuckDB, in one run.

Usage::

    python benchmarks/run_bench.py                          # default sizes, 3 repeats
    python benchmarks/run_bench.py --quick                  # smoke run, about a minute
    python benchmarks/run_bench.py --sizes 10000,1000000 --repeats 5
    python benchmarks/run_bench.py --show benchmarks/results/latest.json

It measures (1) the fraud example with `seeknal run --full`, `--parallel` and `--parallel
--max-workers 1` against the floor (the same SQL in one DuckDB process, see floor.py), (2)
start-up, a no-op run and `seeknal plan` at 15 and 500 nodes, (3) the tutorial's experiment
environment and its promotion, (4) per-node orchestration overhead on 50 trivial nodes. The table
goes to stdout, progress to stderr, and the figures to `benchmarks/results/<timestamp>.json` and
`benchmarks/results/latest.json`.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import report
import workloads
from procs import BenchmarkError, Sample, measure

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
FLOOR_SCRIPT = HERE / "floor.py"

DEFAULT_SIZES = (10_000, 100_000, 1_000_000, 5_000_000)
QUICK_SIZES = (10_000,)
LARGEST_ENV_SIZE = 1_000_000
DEFAULT_REPEATS = 3
MIN_STARTUP_REPEATS = 3
SECTIONS = ("fraud", "startup", "environments", "overhead")

FRAUD_MODES: dict[str, tuple[str, ...]] = {
    "sequential": ("run", "--full"),
    "parallel": ("run", "--parallel", "--full"),
    "parallel_1": ("run", "--parallel", "--max-workers", "1", "--full"),
}
# Untimed: validates, caches the data files' hashes and creates the Dagster instance, so the
# timed runs measure a project in use rather than its first-ever command.
WARM_UP = (("plan",), ("run", "--select", "source.merchant_data"))
SYNTHETIC_SOURCES, SYNTHETIC_TRANSFORMS = 50, 450
TRIVIAL_TRANSFORMS = 49

_started = time.perf_counter()


def _say(text: str) -> None:
    """Progress for the person waiting; the results table goes to stdout at the end."""
    sys.stderr.write(f"[{time.perf_counter() - _started:7.1f}s] {text}\n")
    sys.stderr.flush()


@dataclass
class FraudProject:
    """A copy of the example at one size, with its own target/."""

    path: Path
    full_sequential_s: float | None = None  # median of part 1, once measured


@dataclass
class Bench:
    """Settings shared by every measurement of one benchmark run."""

    work: Path
    data_cache: Path
    repeats: int
    startup_repeats: int
    timeout_s: float | None
    seeknal: str
    log: Path
    env: dict[str, str] = field(default_factory=dict)
    fraud_projects: dict[int, FraudProject] = field(default_factory=dict)

    def seeknal_command(self, project: Path, *args: str) -> Sample:
        return measure(
            [self.seeknal, "--project", str(project), *args],
            cwd=project,
            env=self.env,
            log=self.log,
            timeout_s=self.timeout_s,
        )

    def floor(self, project: Path) -> Sample:
        """The floor for `project`, into a fresh folder beside it."""
        out = project.parent / "floor"
        shutil.rmtree(out, ignore_errors=True)
        sample = measure(
            [sys.executable, str(FLOOR_SCRIPT), "--project", str(project), "--out", str(out)],
            cwd=project,
            env=self.env,
            log=self.log,
            timeout_s=self.timeout_s,
        )
        shutil.rmtree(out, ignore_errors=True)
        return sample

    def warm_up(self, project: Path, *commands: tuple[str, ...]) -> None:
        for args in commands:
            self.seeknal_command(project, *args)

    def fraud_project(self, transactions: int) -> FraudProject:
        """The example at `transactions`, created (data from the cache) and warmed up once."""
        if transactions not in self.fraud_projects:
            _say(f"preparing the fraud example at N={transactions:,}")
            data = workloads.fraud_data(self.data_cache, transactions)
            path = workloads.copy_fraud_project(self.work / f"fraud-{transactions}" / "p", data)
            self.warm_up(path, *WARM_UP)
            self.fraud_projects[transactions] = FraudProject(path)
        return self.fraud_projects[transactions]


def _rotated(items: list[str], turn: int) -> list[str]:
    """`items` starting at a different one each repeat, so no mode always runs first."""
    shift = turn % len(items)
    return items[shift:] + items[:shift]


# --- 1. the fraud example against the floor --------------------------------------------------


def bench_fraud(bench: Bench, sizes: list[int]) -> list[dict]:
    rows = []
    for transactions in sizes:
        project = bench.fraud_project(transactions)
        samples: dict[str, list[Sample]] = {"floor": [], **{mode: [] for mode in FRAUD_MODES}}
        for turn in range(bench.repeats):
            for mode in _rotated(list(samples), turn):
                _say(f"fraud N={transactions:,}: {mode}, repeat {turn + 1}/{bench.repeats}")
                if mode == "floor":
                    samples[mode].append(bench.floor(project.path))
                else:
                    samples[mode].append(bench.seeknal_command(project.path, *FRAUD_MODES[mode]))
        row = {"transactions": transactions}
        row.update({mode: report.series(found) for mode, found in samples.items()})
        project.full_sequential_s = row["sequential"]["median_wall_s"]
        rows.append(row)
    return rows


# --- 2. start-up, no-op and plan -------------------------------------------------------------


def bench_startup(bench: Bench, smallest: int) -> dict:
    fraud = bench.fraud_project(smallest)
    if fraud.full_sequential_s is None:
        bench.seeknal_command(fraud.path, "run", "--full")
    synthetic = workloads.synthetic_project(
        bench.work / "synthetic-500" / "p", SYNTHETIC_SOURCES, SYNTHETIC_TRANSFORMS
    )
    commands = {
        "help": (fraud.path, ("--help",)),
        "noop_run": (fraud.path, ("run",)),
        "plan_15": (fraud.path, ("plan",)),
        "plan_500": (synthetic, ("plan",)),
    }
    state = fraud.path / "target" / "state" / "prod.json"
    before = state.stat().st_mtime_ns

    found: dict[str, dict] = {}
    for key, (project, args) in commands.items():
        _say(f"start-up: seeknal {' '.join(args)} ({key})")
        bench.seeknal_command(project, *args)  # untimed: byte-compiles and caches, once
        found[key] = report.series(
            [bench.seeknal_command(project, *args) for _ in range(bench.startup_repeats)]
        )

    if state.stat().st_mtime_ns != before:
        raise BenchmarkError(
            f"`seeknal run` in {fraud.path} changed production's state, so it was not a no-op "
            "and the figure is void. Fix: check why nodes were stale after a full run"
        )
    found["plan_500"]["nodes"] = SYNTHETIC_SOURCES + SYNTHETIC_TRANSFORMS
    return found


# --- 3. environments ---------------------------------------------------------------------------


def bench_environments(bench: Bench, sizes: list[int]) -> list[dict]:
    rows = []
    for transactions in sizes:
        fraud = bench.fraud_project(transactions)
        reference = "median of part 1"
        if fraud.full_sequential_s is None:
            _say(f"environments N={transactions:,}: reference full sequential run")
            fraud.full_sequential_s = bench.seeknal_command(fraud.path, "run", "--full").wall_s
            reference = "one run"
        target = fraud.path / "target"
        baseline = fraud.path.parent / "baseline-target"
        workloads.clone_tree(target, baseline)
        workloads.add_experiment_feature(fraud.path)
        samples: dict[str, list[Sample]] = {"plan": [], "apply": [], "promote": []}
        try:
            for turn in range(bench.repeats):
                _say(f"environments N={transactions:,}: repeat {turn + 1}/{bench.repeats}")
                workloads.clone_tree(baseline, target)
                samples["plan"].append(bench.seeknal_command(fraud.path, "plan", "experiment"))
                samples["apply"].append(
                    bench.seeknal_command(fraud.path, "run", "--env", "experiment")
                )
                samples["promote"].append(
                    bench.seeknal_command(fraud.path, "promote", "experiment")
                )
        finally:
            workloads.remove_experiment_feature(fraud.path)
            workloads.clone_tree(baseline, target)
            shutil.rmtree(baseline, ignore_errors=True)
        row: dict = {
            "transactions": transactions,
            "full_sequential_s": fraud.full_sequential_s,
            "full_sequential_source": reference,
        }
        row.update({key: report.series(found) for key, found in samples.items()})
        rows.append(row)
    return rows


# --- 4. orchestration overhead per node --------------------------------------------------------


def bench_overhead(bench: Bench) -> dict:
    nodes = TRIVIAL_TRANSFORMS + 1
    project = workloads.tree_project(bench.work / f"trivial-{nodes}" / "p", TRIVIAL_TRANSFORMS)
    bench.warm_up(project, ("plan",), ("run", "--select", "source.seed"))
    commands = {"sequential": ("run", "--full"), "parallel": ("run", "--parallel", "--full")}
    samples: dict[str, list[Sample]] = {"floor": [], **{mode: [] for mode in commands}}
    for turn in range(bench.repeats):
        for mode in _rotated(list(samples), turn):
            _say(f"overhead, {nodes} nodes: {mode}, repeat {turn + 1}/{bench.repeats}")
            if mode == "floor":
                samples[mode].append(bench.floor(project))
            else:
                samples[mode].append(bench.seeknal_command(project, *commands[mode]))

    found: dict = {"nodes": nodes}
    found.update({mode: report.series(s) for mode, s in samples.items()})
    floor_s = found["floor"]["median_wall_s"]
    for mode in commands:
        extra = found[mode]["median_wall_s"] - floor_s
        found[mode]["overhead_ms_per_node"] = round(1000 * extra / nodes, 1)
    return found


# --- the command -------------------------------------------------------------------------------


def _sizes(text: str) -> list[int]:
    """`10000,1M,100k` -> [10000, 100000, 1000000] (sorted, without repeats)."""
    sizes = set()
    for part in text.split(","):
        part = part.strip().lower().replace("_", "")
        scale = {"k": 1_000, "m": 1_000_000}.get(part[-1:], 1)
        digits = part[:-1] if scale > 1 else part
        if not digits.isdigit() or int(digits) * scale < 1:
            raise argparse.ArgumentTypeError(
                f"expected positive whole numbers separated by commas (e.g. 10000,1M), got {text!r}"
            )
        sizes.add(int(digits) * scale)
    return sorted(sizes)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--sizes",
        type=_sizes,
        help="transactions of the fraud example (default 10000,100000,1000000,5000000)",
    )
    parser.add_argument(
        "--repeats",
        type=int,
        help="repeats per figure, medians reported (default 3; 1 with --quick)",
    )
    parser.add_argument(
        "--env-sizes",
        type=_sizes,
        help="sizes for the environment figures (default: the smallest size and the largest "
        "size up to 1,000,000)",
    )
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: N=10,000, 1 repeat, about a minute"
    )
    parser.add_argument(
        "--only",
        default=",".join(SECTIONS),
        help=f"comma-separated parts to run, of {','.join(SECTIONS)} (default: all)",
    )
    parser.add_argument(
        "--timeout", type=float, default=3600.0, help="seconds before a command is killed"
    )
    parser.add_argument(
        "--results", type=Path, default=RESULTS, help="folder for results and the data cache"
    )
    parser.add_argument(
        "--keep-work", action="store_true", help="keep the project copies (path is printed)"
    )
    parser.add_argument("--show", type=Path, metavar="JSON", help="print a saved result's table")
    return parser


def _seeknal_executable() -> str:
    beside = Path(sys.executable).parent / "seeknal"
    found = str(beside) if beside.exists() else shutil.which("seeknal")
    if not found:
        raise SystemExit(
            "error: no `seeknal` command beside this Python or on PATH. Fix: run the harness "
            "with the project's venv, e.g. `.venv/bin/python benchmarks/run_bench.py`"
        )
    return found


def _command_env() -> dict[str, str]:
    """The environment of every measured command: CI=true, no DAGSTER_HOME (target/dagster)."""
    env = {k: v for k, v in os.environ.items() if k not in ("DAGSTER_HOME", "SEEKNAL_PROJECT_DIR")}
    env["CI"] = "true"
    return env


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.show:
        sys.stdout.write(report.render(report.read(args.show)))
        return 0

    sizes = args.sizes or list(QUICK_SIZES if args.quick else DEFAULT_SIZES)
    repeats = args.repeats or (1 if args.quick else DEFAULT_REPEATS)
    env_sizes = args.env_sizes or sorted(
        {sizes[0], max([s for s in sizes if s <= LARGEST_ENV_SIZE], default=sizes[0])}
    )
    sections = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = [s for s in sections if s not in SECTIONS]
    if repeats < 1 or unknown:
        raise SystemExit(
            f"error: --repeats must be at least 1 and --only may name {', '.join(SECTIONS)}"
            + (f"; got {', '.join(unknown)}" if unknown else "")
        )

    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    (args.results / "work").mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f"{stamp}-", dir=args.results / "work"))
    bench = Bench(
        work=work,
        data_cache=args.results / "data",
        repeats=repeats,
        startup_repeats=max(repeats, MIN_STARTUP_REPEATS),
        timeout_s=args.timeout,
        seeknal=_seeknal_executable(),
        log=work / "commands.log",
        env=_command_env(),
    )
    document: dict = {
        "machine": report.machine(workloads.REPO),
        "options": {
            "sizes": sizes,
            "environment_sizes": env_sizes,
            "repeats": repeats,
            "startup_repeats": bench.startup_repeats,
            "quick": args.quick,
            "sections": sections,
        },
        "complete": False,
    }

    _say(f"working in {work}; command output goes to {bench.log}")
    failed = None
    try:
        if "fraud" in sections:
            document["fraud"] = bench_fraud(bench, sizes)
        if "startup" in sections:
            document["startup"] = bench_startup(bench, sizes[0])
        if "environments" in sections:
            document["environments"] = bench_environments(bench, env_sizes)
        if "overhead" in sections:
            document["overhead"] = bench_overhead(bench)
        document["complete"] = True
    except BenchmarkError as error:
        failed = error
    finally:
        document["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
        document["total_s"] = round(time.perf_counter() - _started, 1)
        report.finish(document)
        written = report.write(document, args.results, stamp)
        if args.keep_work or failed:
            _say(f"kept the working copies in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)

    sys.stdout.write(report.render(document))
    sys.stdout.write(f"\nResults: {written} (and {args.results / 'latest.json'})\n")
    if failed:
        sys.stderr.write(f"error: {failed}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
