"""The full vocabulary against the starter vocabulary, side by side (issue 9, "Speed and memory").

Two fresh child processes, each a stand-in for one worker: one loads the knowledge folder as shipped
(vocabulary.yaml with the RxNorm concept table and its NDCs), the other the starter vocabulary (the
same folder without rxnorm.tsv, rxnorm_ndc.tsv.gz and rxnorm.version). Each reports the seconds to
load, its resident memory (VmRSS) after loading, and then, with the shipped rules, the p50 of
EvaluateSafety's engine step (`engine.evaluate.evaluate`, CPU time of the process per call, which a
shared machine does not inflate; the wall-clock p50 is reported beside it) over the same patients, whose medications are
curated names both vocabularies know (so both do the same clinical work), cycling so that every name
is seen again (name resolution is cached per vocabulary: the second sight of a name is a cache hit,
which the child checks). The parent prints the ratios against the 1.10 limit and the 2 s load target.

    python -m engine.ops.vocab_bench [--quick] [--json PATH]

Each child imports what a worker imports (gRPC server, HTTPS door, use cases, database layer) before
loading, then loads from files, not the database: what the vocabulary adds to a worker. The full
`make bench` measures the served path with the full vocabulary (memory per worker, the vocabulary
built from the database).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

__all__ = ["LIMIT_RATIO", "LOAD_TARGET_S", "compare", "main", "measure"]

PROJECT_ROOT = Path(__file__).resolve().parents[2]
KNOWLEDGE = PROJECT_ROOT / "rules" / "knowledge"
CONCEPT_FILES = ("rxnorm.tsv", "rxnorm_ndc.tsv.gz", "rxnorm.version")
LIMIT_RATIO = 1.10
LOAD_TARGET_S = 2.0


def _rss_mb() -> float:
    with open("/proc/self/status", encoding="ascii") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    raise RuntimeError("no VmRSS in /proc/self/status")


def measure(folder: Path, *, patients: int, meds: int, rounds: int) -> dict[str, Any]:
    """Runs in the child: load `folder`, then evaluate `patients` patients `rounds` times each."""
    import random

    # A worker's baseline first: what `praneya serve` holds before any knowledge (the gRPC server, the
    # HTTPS door, the use cases, the database layer), so the ratio compares workers, not bare engines.
    import engine.doors.cdshooks.server
    import engine.doors.grpc.server
    import engine.doors.serve  # noqa: F401

    rss_before = _rss_mb()
    t0, c0 = time.perf_counter(), time.process_time()
    from engine.knowledge import load_knowledge_files

    knowledge = load_knowledge_files(folder)
    load_s = time.perf_counter() - t0
    load_cpu_s = time.process_time()
    load_only_cpu_s = load_cpu_s - c0
    from engine.evaluate import evaluate
    from engine.model import EvaluationRequest, MedicationFact, PatientSnapshot
    from engine.rules import RuleSet, load_rule_files

    rules = RuleSet.build([r.rule for r in load_rule_files([PROJECT_ROOT / "rules"]) if r.rule is not None],
                          version="vocab-bench")  # fmt: skip
    rss_loaded = _rss_mb()
    vocab = knowledge.vocabulary
    # The curated ingredients (vocabulary.yaml), which both vocabularies resolve to themselves.
    names = sorted(n for n in vocab.ingredients if vocab.normalize_drug(n).ingredients == (n,))
    rng = random.Random(9)
    cohort = [
        PatientSnapshot(
            patient_id=f"p{i}", tenant_id="t", age=rng.randint(20, 90), sex=rng.choice(("female", "male")),
            pregnant=False,
            medications=tuple(MedicationFact(f"m{j}", name) for j, name in enumerate(rng.sample(names, meds))),
            allergies=(),
        )
        for i in range(patients)
    ]  # fmt: skip
    request = EvaluationRequest()
    for snapshot in cohort:  # warm: every name resolved once
        evaluate(snapshot, request, rules, knowledge)
    cached = all(vocab.normalize_drug(n) is vocab.normalize_drug(n) for n in names[:50])
    samples: list[float] = []  # CPU ms of this process per call: robust on a shared machine
    wall: list[float] = []
    alerts = 0
    for _ in range(rounds):
        for snapshot in cohort:
            t, c = time.perf_counter(), time.process_time()
            result = evaluate(snapshot, request, rules, knowledge)
            samples.append((time.process_time() - c) * 1000.0)
            wall.append((time.perf_counter() - t) * 1000.0)
            alerts += len(result.alerts)
    samples.sort()
    return {
        "folder_files": sorted(p.name for p in folder.iterdir()),
        "vocabulary_version": vocab.version,
        "ingredients": len(vocab.ingredients),
        "concepts": len(vocab.concepts),
        "ndcs": len(vocab.ndc),
        "load_seconds": round(load_s, 3),
        "load_cpu_seconds_incl_imports": round(load_cpu_s, 3),
        "load_cpu_seconds": round(load_only_cpu_s, 3),  # the load alone: what a busy machine does not inflate
        "rss_mb_before_load": round(rss_before, 1),
        "rss_mb_loaded": round(rss_loaded, 1),
        "rss_mb_after_evaluations": round(_rss_mb(), 1),
        "evaluations": len(samples),
        "medications_per_patient": meds,
        "p50_ms": round(statistics.median(samples), 3),
        "p99_ms": round(samples[min(len(samples) - 1, int(len(samples) * 0.99))], 3),
        "wall_p50_ms": round(statistics.median(wall), 3),
        "alerts": alerts,
        "name_resolution_cached": cached,
    }


def _child(folder: Path, patients: int, meds: int, rounds: int) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "engine.ops.vocab_bench", "--child", str(folder),
           "--patients", str(patients), "--meds", str(meds), "--rounds", str(rounds)]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=PROJECT_ROOT, env=env)
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def compare(*, quick: bool = False) -> dict[str, Any]:
    patients, meds, rounds = (100, 15, 3) if quick else (300, 15, 10)
    with tempfile.TemporaryDirectory(prefix="praneya-starter-") as tmp:
        starter_dir = Path(tmp) / "knowledge"
        shutil.copytree(KNOWLEDGE, starter_dir, ignore=shutil.ignore_patterns(*CONCEPT_FILES))
        # Alternate the order so that neither side always runs on a warmer machine.
        starter = _child(starter_dir, patients, meds, rounds)
        full = _child(KNOWLEDGE, patients, meds, rounds)
        starter_2 = _child(starter_dir, patients, meds, rounds)
        full_2 = _child(KNOWLEDGE, patients, meds, rounds)

    def best(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
        return a if a["p50_ms"] <= b["p50_ms"] else b

    s, f = best(starter, starter_2), best(full, full_2)
    p50_ratio = round(f["p50_ms"] / s["p50_ms"], 3)
    rss_ratio = round(f["rss_mb_after_evaluations"] / s["rss_mb_after_evaluations"], 3)
    targets = {
        "full_vs_starter_p50_at_most_1.10x": {
            "value": p50_ratio, "target": LIMIT_RATIO, "met": p50_ratio <= LIMIT_RATIO},
        "full_vs_starter_rss_per_worker_at_most_1.10x": {
            "value": rss_ratio, "target": LIMIT_RATIO, "met": rss_ratio <= LIMIT_RATIO},
        "full_vocabulary_load_under_2s": {
            "value": f["load_seconds"], "target": LOAD_TARGET_S, "met": f["load_seconds"] < LOAD_TARGET_S},
        "name_resolution_cached": {"value": f["name_resolution_cached"] and s["name_resolution_cached"],
                                   "target": True, "met": f["name_resolution_cached"] and s["name_resolution_cached"]},
    }  # fmt: skip
    return {
        "command": "python -m engine.ops.vocab_bench" + (" --quick" if quick else ""),
        "patients": patients, "medications_per_patient": meds, "rounds": rounds,
        "starter": s, "full": f, "runs": {"starter": [starter, starter_2], "full": [full, full_2]},
        "ratios": {"p50_full_vs_starter": p50_ratio, "rss_full_vs_starter": rss_ratio}, "targets": targets,
    }  # fmt: skip


def print_section(r: dict[str, Any], log: Any = print) -> None:
    s, f = r["starter"], r["full"]
    log(f"vocabulary, full vs starter (engine alone, {r['patients']} patients x {r['medications_per_patient']}"
        f" curated medications, {r['rounds']} rounds; best of two child processes each):")  # fmt: skip
    log(f"  {'':10} {'ingredients':>11} {'concepts':>9} {'NDCs':>8} {'load s':>7} {'load cpu s':>10} {'RSS MB':>7}"
        f" {'p50 ms':>7} {'p99 ms':>7} {'wall p50':>8}")  # fmt: skip
    for label, x in (("starter", s), ("full", f)):
        log(f"  {label:10} {x['ingredients']:11,} {x['concepts']:9,} {x['ndcs']:8,} {x['load_seconds']:7.2f}"
            f" {x.get('load_cpu_seconds', 0.0):10.2f} {x['rss_mb_after_evaluations']:7.1f} {x['p50_ms']:7.3f}"
            f" {x['p99_ms']:7.3f} {x['wall_p50_ms']:8.3f}")  # fmt: skip
    for name, t in r["targets"].items():
        log(f"  {name:46} {t['value']!s:>8} (limit {t['target']}) {'met' if t['met'] else 'NOT MET'}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--patients", type=int, default=100, help=argparse.SUPPRESS)
    parser.add_argument("--meds", type=int, default=15, help=argparse.SUPPRESS)
    parser.add_argument("--rounds", type=int, default=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(measure(args.child, patients=args.patients, meds=args.meds, rounds=args.rounds)))
        return 0
    results = compare(quick=args.quick)
    print_section(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return 0 if all(t["met"] for t in results["targets"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
