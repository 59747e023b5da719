"""Trim a Synthea R4 transaction bundle to what the FHIR mapping reads (see SOURCE.md).

    git --git-dir MIRROR cat-file blob BLOB | python tests/data/fhir/trim_synthea.py > OUT.json

Kept: the Patient (without narrative, extensions, identifiers, address and telecom), every
MedicationRequest, MedicationStatement, Medication, AllergyIntolerance, Condition and NutritionOrder,
and of the Observations the latest of each code. Dropped: everything else (encounters, claims,
explanations of benefit, procedures, immunizations, reports, care plans, organisations, ...).
"""

from __future__ import annotations

import json
import sys
from typing import Any

KEEP = {"MedicationRequest", "MedicationStatement", "Medication", "AllergyIntolerance", "Condition", "NutritionOrder"}
PATIENT_DROP = ("text", "extension", "identifier", "address", "telecom", "communication", "maritalStatus")


def trim(bundle: dict[str, Any]) -> dict[str, Any]:
    entries = []
    latest: dict[str, dict[str, Any]] = {}
    for entry in bundle["entry"]:
        resource = entry["resource"]
        kind = resource["resourceType"]
        if kind == "Patient":
            for key in PATIENT_DROP:
                resource.pop(key, None)
            entries.append(entry)
        elif kind in KEEP:
            entries.append(entry)
        elif kind == "Observation":
            code = "|".join(c.get("code", "") for c in resource.get("code", {}).get("coding", []))
            when = resource.get("effectiveDateTime", "")
            if code not in latest or latest[code]["resource"].get("effectiveDateTime", "") <= when:
                latest[code] = entry
    entries.extend(latest[code] for code in sorted(latest))
    return {"resourceType": "Bundle", "type": bundle["type"], "entry": entries}


if __name__ == "__main__":
    json.dump(trim(json.load(sys.stdin)), sys.stdout, indent=1, ensure_ascii=False)
    sys.stdout.write("\n")
