"""FHIR R4 in: Bundles and resources (already-parsed JSON) -> the engine's facts.

Pure, like the engine core: no I/O, no store, no transport. Reading a file or a request body, and
turning `FhirError` into INVALID_ARGUMENT or a 400 with an OperationOutcome, is the doors' work.
Validation is our own (measured against FHIR model libraries: README.md, "FHIR R4 input").
"""

from engine.fhir._dosage import DosageText, dosage_text
from engine.fhir._mapping import PatientData, iter_ndjson, parse_draft_orders, parse_patient_data
from engine.fhir._read import FhirError, FhirIssue

__all__ = [
    "DosageText",
    "FhirError",
    "FhirIssue",
    "PatientData",
    "dosage_text",
    "iter_ndjson",
    "parse_draft_orders",
    "parse_patient_data",
]
