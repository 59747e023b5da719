"""The benchmark's own instruments (engine/ops/bench_measure.py, bench_mix.py): what they count is
what they say. No timing is asserted (house rule): only that CPU is read from /proc, split per
party and per call as documented, and that the patient mix is a mix."""

from __future__ import annotations

import os
from collections import Counter

from engine.ops.bench_measure import CpuMeter, cpu_seconds, percentile, rss_mb
from engine.ops.bench_mix import PatientMix


def test_cpu_and_memory_are_read_from_proc_for_a_live_process_and_none_for_a_gone_one() -> None:
    before = cpu_seconds(os.getpid())
    assert before is not None and before >= 0
    sum(i * i for i in range(2_000_000))  # some CPU of this process
    after = cpu_seconds(os.getpid())
    assert after is not None and after >= before
    assert rss_mb(os.getpid()) > 10
    assert cpu_seconds(2**22 + 12345) is None  # above pid_max's default: no such process


def test_cpu_per_call_is_split_per_party_and_a_new_process_counts_from_zero() -> None:
    before = {"server": {1: 10.0, 2: 20.0}, "postgres": {7: 1.0}, "client": 5.0}
    after = {"server": {1: 10.5, 2: 20.3}, "postgres": {7: 1.4, 8: 0.2}, "client": 5.1}
    per = CpuMeter.per_call(before, after, 100)
    assert per["server"] == 8.0 and per["postgres"] == 6.0 and per["client"] == 1.0  # ms per call
    assert per["total"] == 15.0
    assert per["server_by_process_s"] == {"1": 0.5, "2": 0.3} and per["postgres_backends"] == 2


def test_percentiles_are_of_the_sorted_samples() -> None:
    samples = [float(x) for x in range(100, 0, -1)]
    assert percentile(samples, 0.5) == 51.0 and percentile(samples, 0.99) == 99.0


def test_the_patient_mix_is_skewed_and_covers_every_size() -> None:
    mix = PatientMix("t", {5: [f"a{i}" for i in range(500)], 15: [f"b{i}" for i in range(350)],
                           40: [f"c{i}" for i in range(150)]}, {})  # fmt: skip
    counts = Counter(mix.sequence(length=20_000))
    ranked = [n for _, n in counts.most_common()]
    assert ranked[0] > 10 * ranked[len(ranked) // 2]  # a few patients are asked about often, most rarely
    assert {p[0] for p in counts} == {"a", "b", "c"}
    assert set(mix.sequence(15, length=1_000)) <= set(mix.by_size[15])
    assert mix.sequence(length=100) == mix.sequence(length=100)  # the same run, call for call
