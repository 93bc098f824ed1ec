"""Runs one command and measures it: wall time and peak resident memory of its process tree.

Memory is sampled every 20 ms from `/proc/<pid>/stat` (its resident size is the VmRSS of
`/proc/<pid>/status`) of the command and every descendant, so the step processes of a parallel
run count as much as the parent. Each sample sums the tree; the figure kept is the largest sum
seen. NOTE: pages shared between processes (forked interpreters) count once per process, as
VmRSS reports them.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

SAMPLE_INTERVAL_S = 0.02
# Finding new descendants means reading every process's stat file, which costs more than the
# memory samples; it is done every RESCAN_EVERY samples (100 ms), the tree's RSS every sample.
RESCAN_EVERY = 5
_PROC = Path("/proc")


class BenchmarkError(RuntimeError):
    """A figure could not be measured; the message says which and why."""


class CommandFailed(BenchmarkError):
    """A measured command exited with a non-zero status or was killed."""


@dataclass(frozen=True)
class Sample:
    """One measured execution of a command."""

    wall_s: float
    peak_rss_bytes: int  # largest sum of VmRSS over the process tree
    peak_process_rss_bytes: int  # largest VmRSS of any one process of the tree
    processes: int  # distinct processes seen in the tree
    cpu_s: float  # user + system time of the whole tree (see `measure`)


_TICKS_PER_S = os.sysconf("SC_CLK_TCK")
_PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")


class _Stat(NamedTuple):
    parent: int
    cpu_s: float  # user + system time of the process itself
    rss_bytes: int  # resident set size; the same count as VmRSS in /proc/<pid>/status


def _stat(pid: int | str) -> _Stat | None:
    """One process's /proc/<pid>/stat; None once it has gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            raw = handle.read()
    except OSError:
        return None
    # NOTE: the command name (field 2) may hold spaces and parentheses; the fields after the
    # last ')' start with field 3 (state), so field k is at index k - 3.
    fields = raw[raw.rfind(b")") + 2 :].split()
    if len(fields) < 22:
        return None
    cpu = (int(fields[11]) + int(fields[12])) / _TICKS_PER_S
    return _Stat(int(fields[1]), cpu, int(fields[21]) * _PAGE_BYTES)


def _tree(root: int) -> list[int]:
    """The root and all its descendants, as far as /proc shows them right now."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir(_PROC):
        if entry.name.isdigit():
            stat = _stat(entry.name)
            if stat is not None:
                children.setdefault(stat.parent, []).append(int(entry.name))
    found, pending = [], [root]
    while pending:
        pid = pending.pop()
        found.append(pid)
        pending.extend(children.get(pid, ()))
    return found


class _TreeSampler(threading.Thread):
    """Samples the tree under `root` every SAMPLE_INTERVAL_S until stopped."""

    def __init__(self, root: int):
        super().__init__(daemon=True)
        self.root = root
        self.peak_tree = 0
        self.peak_process = 0
        self.cpu_seen: dict[int, float] = {}  # pid -> latest CPU seconds sampled
        self._pids = [root]
        self._count = 0
        self._stop_event = threading.Event()

    def sample(self) -> None:
        if self._count % RESCAN_EVERY == 0:
            self._pids = _tree(self.root)
        self._count += 1
        total = 0
        for pid in self._pids:
            stat = _stat(pid)
            if stat is None:
                continue
            total += stat.rss_bytes
            self.peak_process = max(self.peak_process, stat.rss_bytes)
            self.cpu_seen[pid] = stat.cpu_s
        self.peak_tree = max(self.peak_tree, total)

    def run(self) -> None:
        while not self._stop_event.is_set():
            self.sample()
            self._stop_event.wait(SAMPLE_INTERVAL_S)

    def stop(self) -> None:
        self._stop_event.set()
        self.join()


def measure(
    argv: Sequence[str],
    cwd: Path,
    env: Mapping[str, str],
    log: Path,
    timeout_s: float | None = None,
) -> Sample:
    """Runs `argv` to completion and returns its wall time and peak memory.

    Args:
        argv: the command.
        cwd: its working folder.
        env: its complete environment.
        log: file receiving the command's stdout and stderr (appended).
        timeout_s: kill the command after this long (None: no limit).

    Raises:
        CommandFailed: the command exited non-zero or timed out; the message names the log.
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        out.write(f"\n$ {' '.join(argv)}\n".encode())
        out.flush()
        started = time.perf_counter()
        process = subprocess.Popen(
            list(argv), cwd=cwd, env=dict(env), stdout=out, stderr=subprocess.STDOUT
        )
        sampler = _TreeSampler(process.pid)
        sampler.start()
        watchdog = threading.Timer(timeout_s, process.kill) if timeout_s else None
        if watchdog:
            watchdog.start()
        try:
            # NOTE: wait4 instead of Popen.wait, for the resource usage of the finished tree.
            _, status, usage = os.wait4(process.pid, 0)
            process.returncode = code = os.waitstatus_to_exitcode(status)
        finally:
            wall = time.perf_counter() - started
            sampler.stop()
            if watchdog:
                watchdog.cancel()

    if code != 0:
        if code < 0:
            timed_out = timeout_s is not None and wall >= timeout_s
            reason = f"was killed after {timeout_s:g} s" if timed_out else f"died of signal {-code}"
        else:
            reason = f"exited with status {code}"
        raise CommandFailed(f"`{' '.join(argv)}` {reason} in {cwd}; its output is in {log}")
    # NOTE: the kernel's count covers the command and the descendants it waited for, exactly;
    # the sampled sum also covers processes nobody waits for (a forkserver's workers), less
    # their last few milliseconds. The larger of the two is the better estimate.
    waited = usage.ru_utime + usage.ru_stime
    cpu = max(waited, sum(sampler.cpu_seen.values()))
    return Sample(wall, sampler.peak_tree, sampler.peak_process, len(sampler.cpu_seen), cpu)
