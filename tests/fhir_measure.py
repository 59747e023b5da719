"""Measure FHIR R4 parse + validate: our own mapping against FHIR model libraries.

    python -m tests.fhir_measure            # the libraries that are installed are measured

The bench bundle: the trimmed Synthea patient tests/data/fhir/synthea-douglas-walsh.json cut to 60
resources, with its MedicationRequests repeated (new ids) up to 15 active medications. Each figure
is the median of repeated runs in this process; import time and resident memory are measured in a
fresh interpreter each. Prints a Markdown table (README.md, "FHIR R4 input").
"""

from __future__ import annotations

import copy
import importlib
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
FIXTURE = HERE / "data" / "fhir" / "synthea-douglas-walsh.json"


def bench_bundle() -> dict[str, Any]:
    bundle = json.loads(FIXTURE.read_text())
    entries = bundle["entry"]
    meds = [e for e in entries if e["resource"]["resourceType"] == "MedicationRequest"]
    others = [e for e in entries if e["resource"]["resourceType"] != "MedicationRequest"]
    out = list(meds)
    i = 0
    while sum(1 for e in out if e["resource"]["status"] == "active") < 15:
        clone = copy.deepcopy(meds[i % len(meds)])
        clone["resource"]["id"] = f"bench-{i}"
        clone["resource"]["status"] = "active"
        clone["fullUrl"] = f"urn:uuid:bench-{i}"
        out.append(clone)
        i += 1
    out.extend(others[: 60 - len(out)])
    return {"resourceType": "Bundle", "type": "collection", "entry": out}


def broken_bundle(bundle: dict[str, Any]) -> dict[str, Any]:
    """Two faults of the kind EHRs send: a status outside its required value set, a coding system
    that is a number."""
    broken = copy.deepcopy(bundle)
    broken["entry"][0]["resource"]["status"] = "activ"
    broken["entry"][1]["resource"]["medicationCodeableConcept"]["coding"][0]["system"] = 42
    return broken


def median_ms(fn: Callable[[], Any], runs: int) -> float:
    for _ in range(min(20, runs)):
        fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


IMPORTS = {
    "ours (engine.fhir)": "import engine.fhir",
    "fhir.resources 8 (R4B models, pydantic v2)": "import fhir.resources.R4B.bundle",
    "fhirclient 4 (R4 models)": "import fhirclient.models.bundle",
}


def fresh(statement: str, parse: str = "") -> tuple[float, float]:
    """(import ms, max RSS MB after import and one parse) in a fresh interpreter."""
    code = (
        "import time, resource, json\n"
        "t = time.perf_counter()\n"
        f"{statement}\n"
        "ms = (time.perf_counter() - t) * 1000\n"
        f"{parse}\n"
        "print(ms, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=HERE.parent)
    ms, rss = out.stdout.split()
    return float(ms), float(rss)


def main() -> None:
    bundle = bench_bundle()
    broken = broken_bundle(bundle)
    n = len(bundle["entry"])
    rows: list[tuple[str, str, str, str, str, str]] = []
    baseline = fresh("pass")[1]
    fixture = json.dumps(str(FIXTURE))

    from engine.fhir import FhirError, parse_patient_data

    ours = median_ms(lambda: parse_patient_data(bundle), 300)
    try:
        parse_patient_data(broken)
        ours_error = "(accepted)"
    except FhirError as exc:
        ours_error = "; ".join(str(i) for i in exc.issues)
    ms, rss = fresh(
        IMPORTS["ours (engine.fhir)"],
        f"from tests.fhir_measure import bench_bundle; engine.fhir.parse_patient_data(bench_bundle())  # {fixture}",
    )
    rows.append(
        (
            "ours (engine.fhir)",
            f"{ours:.2f}",
            f"{ours / n * 1000:.0f}",
            f"{ms:.0f}",
            f"{rss - baseline:.0f}",
            ours_error,
        )
    )

    # Imported by name: the libraries are measured when installed, and are no dependency of ours.
    try:
        R4BBundle = importlib.import_module("fhir.resources.R4B.bundle").Bundle
        ValidationError = importlib.import_module("pydantic").ValidationError

        lib = median_ms(lambda: R4BBundle.model_validate(bundle), 30)
        try:
            R4BBundle.model_validate(broken)
            err = "(accepted)"
        except ValidationError as exc:
            err = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()[:3])
        ms, rss = fresh(
            IMPORTS["fhir.resources 8 (R4B models, pydantic v2)"],
            "from tests.fhir_measure import bench_bundle\n"
            "fhir.resources.R4B.bundle.Bundle.model_validate(bench_bundle())",
        )
        rows.append(
            (
                "fhir.resources 8.3 (R4B 4.3.0 models, pydantic v2)",
                f"{lib:.2f}",
                f"{lib / n * 1000:.0f}",
                f"{ms:.0f}",
                f"{rss - baseline:.0f}",
                err[:300],
            )
        )
    except ImportError:
        rows.append(("fhir.resources", "not installed", "", "", "", ""))

    try:
        ClientBundle = importlib.import_module("fhirclient.models.bundle").Bundle
        FHIRValidationError = importlib.import_module("fhirclient.models.fhirabstractbase").FHIRValidationError

        lib = median_ms(lambda: ClientBundle(copy.deepcopy(bundle)), 30)
        try:
            ClientBundle(copy.deepcopy(broken))
            err = "(accepted: enumerated codes are not checked)"
        except FHIRValidationError as exc:
            err = str(exc).replace("\n", " ")[:300]
        ms, rss = fresh(
            IMPORTS["fhirclient 4 (R4 models)"],
            "from tests.fhir_measure import bench_bundle; fhirclient.models.bundle.Bundle(bench_bundle())",
        )
        rows.append(
            (
                "fhirclient 4.4 (R4 4.0.1 models)",
                f"{lib:.2f}",
                f"{lib / n * 1000:.0f}",
                f"{ms:.0f}",
                f"{rss - baseline:.0f}",
                err,
            )
        )
    except ImportError:
        rows.append(("fhirclient", "not installed", "", "", "", ""))

    print(f"bench bundle: {n} resources, 15 active MedicationRequests; python {sys.version.split()[0]}")
    print(
        "| parser | ms per bundle (p50) | µs per resource | import ms | RSS MB (import + parse) | the broken bundle |"
    )
    print("|---|---|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
