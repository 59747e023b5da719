"""How `make bench` measures: wall-clock latency and throughput, and CPU time per call from /proc.

Wall-clock figures on a shared 2-core machine move with whatever else runs; CPU time per call does
not, so every phase reports both. CPU is counted where it is spent: the server's processes (the
supervisor and every worker), the PostgreSQL backends serving them (found by application_name in
pg_stat_activity) and the load generator itself (this process, less the thread that changes records
between calls, which stands for other writers and is not part of any call's cost).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "CpuMeter",
    "cpu_seconds",
    "percentile",
    "rss_mb",
    "run_phase",
    "worker_pids",
]

_TICKS = os.sysconf("SC_CLK_TCK")


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU of a process, all its threads (those already gone included); None if gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()  # after the command name, which may hold spaces
    return (int(fields[11]) + int(fields[12])) / _TICKS  # utime, stime: fields 14 and 15 of proc(5)


def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def worker_pids(parent: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(parent)], capture_output=True, text=True, check=False)
    return sorted(int(p) for p in out.stdout.split())


@dataclass
class CpuMeter:
    """Reads the CPU of every party to a call. `server` lists the server's processes, `postgres` the
    backends serving it; `excluded` is client CPU spent on other things (seconds so far)."""

    server: Callable[[], list[int]]
    postgres: Callable[[], list[int]]
    excluded: Callable[[], float] = lambda: 0.0

    def read(self) -> dict[str, Any]:
        server = {p: cpu_seconds(p) for p in self.server()}
        postgres = {p: cpu_seconds(p) for p in self.postgres()}
        return {
            "server": {p: c for p, c in server.items() if c is not None},
            "postgres": {p: c for p, c in postgres.items() if c is not None},
            "client": time.process_time() - self.excluded(),
        }

    @staticmethod
    def per_call(before: dict[str, Any], after: dict[str, Any], calls: int) -> dict[str, Any]:
        def spent(group: str) -> dict[int, float]:
            # A process that appeared during the phase (a pool opening a connection) counts from 0.
            return {p: c - before[group].get(p, 0.0) for p, c in after[group].items()}

        server, postgres = spent("server"), spent("postgres")
        client = after["client"] - before["client"]
        n = max(1, calls)
        figures = {
            "server": sum(server.values()) / n * 1000,
            "postgres": sum(postgres.values()) / n * 1000,
            "client": client / n * 1000,
        }
        figures["total"] = sum(figures.values())
        return {
            **{k: round(v, 3) for k, v in figures.items()},
            # Each server process's share of the phase's CPU: every worker should have served.
            "server_by_process_s": {str(p): round(c, 2) for p, c in sorted(server.items())},
            "postgres_backends": len(postgres),
        }


@dataclass
class _Counter:
    """Calls completed so far, for the thread that changes records at a fixed share of calls."""

    value: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, n: int = 1) -> None:
        with self.lock:
            self.value += n


CALLS = _Counter()


def run_phase(
    call: Callable[[int], None],
    meter: CpuMeter,
    *,
    concurrency: int,
    calls: int | None = None,
    seconds: float | None = None,
    warmup: int = 10,
    errors_are: type[BaseException] = Exception,
    counted: bool = True,
) -> dict[str, Any]:
    """`call(slot)` `calls` times in a row (concurrency 1), or from `concurrency` threads for `seconds`;
    `slot` picks the connection (the call number at concurrency 1, the thread's index otherwise).
    `counted`: the calls ask about patients, so the writer changes records at its share of them."""
    tally = CALLS.add if counted else (lambda n=1: None)
    for i in range(warmup):
        call(i)
    samples: list[list[float]] = [[] for _ in range(concurrency)]
    errors = [0] * concurrency
    before = meter.read()
    t0 = time.perf_counter()
    if concurrency == 1:
        assert calls is not None
        out = samples[0]
        for i in range(calls):
            s = time.perf_counter()
            call(i)
            out.append((time.perf_counter() - s) * 1000)
            tally()
    else:
        assert seconds is not None
        stop = t0 + seconds

        def worker(slot: int) -> None:
            mine = samples[slot]
            while time.perf_counter() < stop:
                s = time.perf_counter()
                try:
                    call(slot)
                except errors_are:
                    errors[slot] += 1
                    continue
                mine.append((time.perf_counter() - s) * 1000)
                tally()

        threads = [threading.Thread(target=worker, args=(i,), name=f"load-{i}") for i in range(concurrency)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    elapsed = time.perf_counter() - t0
    after = meter.read()
    flat = [x for s in samples for x in s]
    done = len(flat)
    return {
        "concurrency": concurrency,
        "calls": done,
        "errors": sum(errors),
        "p50_ms": round(percentile(flat, 0.5), 3) if flat else None,
        "p99_ms": round(percentile(flat, 0.99), 3) if flat else None,
        "mean_ms": round(statistics.fmean(flat), 3) if flat else None,
        "calls_per_s": round(done / elapsed, 1),
        "cpu_ms_per_call": CpuMeter.per_call(before, after, done),
    }
