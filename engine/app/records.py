"""Patient records, from any door: medications, allergies, conditions and readings written (by our ids
or by the EHR's own), the active medication list replaced in one call, the health profile read back,
and the patient's consents granted and revoked.

Inputs carry what a door received, as plain strings (empty means absent); the checks here name the
field and never echo the value (a drug name or code is PHI, and errors reach clients' logs). Every
call runs through `Calls.run`: a user needs MFA; a registered client needs the scope `records.write`
to write, `evaluate.stored` to read the profile. The audit rows of writes come from the database's
triggers, in the same transaction; reading the profile writes its own.
"""

from __future__ import annotations

import re
import unicodedata
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import Connection

from engine.app.calls import Calls, audit_failure
from engine.app.failures import invalid
from engine.app.validation import MAX_CODE, MAX_DISPLAY, check_id, check_text
from engine.demographics import (
    GESTATION_DAYS,
    MAX_GESTATIONAL_WEEKS,
    DemographicInputError,
    check_birth_date,
    check_gestation,
)
from engine.identity import CODE_SYSTEMS, SYSTEM_URIS, coding_from_text, parse_coding
from engine.labs import LOINC_SYSTEMS, LabInputError, lab_catalog
from store import patients, service_repo
from store.admin import grant_consent, revoke_consent
from store.clients import EVALUATE_STORED, RECORDS_WRITE
from store.keys import KeyStore
from store.session import Database, Principal, RequestMeta

__all__ = [
    "ALLERGEN_SYSTEMS",
    "MAX_EXTERNAL_ID",
    "MEDICATION_SYSTEMS",
    "AllergyEntry",
    "AllergyView",
    "CodingText",
    "ConditionEntry",
    "ConditionView",
    "ConsentGrant",
    "DemographicsEntry",
    "HealthProfileView",
    "LactationEntry",
    "LactationView",
    "MedicationEntry",
    "MedicationView",
    "MedicationsReplaced",
    "PregnancyEntry",
    "PregnancyView",
    "ReadingEntry",
    "ReadingView",
    "RecordWritten",
    "Records",
    "check_coding",
    "check_external_id",
]

# Which code systems identify what: a medication is a drug product or ingredient (RxNorm, NDC); an
# allergen may also be a food or substance (SNOMED CT). A condition code on a drug is refused, not ignored.
MEDICATION_SYSTEMS = ("rxnorm", "ndc")
ALLERGEN_SYSTEMS = ("rxnorm", "ndc", "snomed")
ALLERGY_CATEGORIES = ("DRUG", "FOOD", "ENVIRONMENTAL", "INSECT", "LATEX", "OTHER")
ALLERGY_SEVERITIES = ("MILD", "MODERATE", "SEVERE", "ANAPHYLACTIC")
MAX_REACTIONS = 20
MAX_EXTERNAL_ID = 200
_READING_TYPE = re.compile(r"^[a-z][a-z0-9_]{0,39}$")


@dataclass(frozen=True, slots=True)
class CodingText:
    """A code as a caller sent it: a system (URI or short name), the code, its display text."""

    system: str = ""
    code: str = ""
    display: str = ""


def check_coding(field: str, coding: CodingText | None, systems: tuple[str, ...]) -> patients.CodedAs | None:
    """A coding of one of `systems`, or None when absent (None, or all empty)."""
    if coding is None or not (coding.system.strip() or coding.code.strip() or coding.display.strip()):
        return None
    system = check_text(f"{field}.system", coding.system, required=True)
    code = check_text(f"{field}.code", coding.code, required=True, limit=MAX_CODE)
    display = check_text(f"{field}.display", coding.display, limit=MAX_DISPLAY)
    assert system is not None and code is not None
    # The same lookup parse_coding makes, so that a bad system and a bad code name different fields.
    short = CODE_SYSTEMS.get(system.lower().rstrip("/"))
    if short is None or short not in systems:
        allowed = ", ".join(f"{s} ({SYSTEM_URIS[s]})" for s in systems)
        raise invalid(f"{field}.system", f"must be one of {allowed}")
    try:
        parsed = parse_coding(system, code)
    except ValueError:
        raise invalid(f"{field}.code", f"is not a valid {short} code") from None
    return patients.CodedAs(parsed, display)


CONDITION_SYSTEMS = ("icd10", "snomed")
MAX_CONDITION_CODE = 120  # a FHIR system URI, "|" and the code
_BARE_ICD10 = re.compile(r"^[A-Za-z][0-9][0-9A-Za-z](?:\.?[0-9A-Za-z]{1,4})?$")
_BARE_SNOMED = re.compile(r"^[1-9][0-9]{5,17}$")


def check_condition_code(field: str, value: str) -> str | None:
    """A condition code as written (`icd10:J45.909`, `snomed:195967001`, `system|code`, or a bare ICD-10
    or SNOMED CT code), or None when empty. Stored as given: the engine reads every form, and records
    written before codes carried their system (bare ICD-10) keep their meaning."""
    code = check_text(field, value, limit=MAX_CONDITION_CODE)
    if code is None:
        return None
    try:
        coding = coding_from_text(code)
    except ValueError as exc:
        raise invalid(field, str(exc)) from None
    if coding is not None:
        if coding.system not in CONDITION_SYSTEMS:
            raise invalid(field, "a condition code is ICD-10-CM (icd10:) or SNOMED CT (snomed:)")
        return code
    if not (_BARE_ICD10.match(code) or _BARE_SNOMED.match(code)):
        raise invalid(field, "is not an ICD-10-CM or SNOMED CT code (write icd10:CODE, snomed:CODE or system|code)")
    return code


def check_external_id(field: str, value: str) -> str | None:
    """The EHR's identifier of a record ("MedicationRequest/123", "urn:oid:...|value"), or None.

    Taken exactly as given (EHR ids are case-sensitive and compared byte for byte), so what could make
    two identifiers look the same and differ is refused rather than normalised: surrounding white
    space, control and format characters (zero-width ones included), line separators."""
    if not value:
        return None
    if len(value) > MAX_EXTERNAL_ID:
        raise invalid(field, f"is longer than {MAX_EXTERNAL_ID} characters")
    if any(unicodedata.category(c) in ("Cc", "Cf", "Cs", "Zl", "Zp") for c in value):
        raise invalid(field, "contains control or format characters")
    if value != value.strip():
        raise invalid(field, "has leading or trailing white space")
    return value


def _required(field: str, value: str) -> str:
    text = check_text(field, value, required=True)
    assert text is not None
    return text


@dataclass(frozen=True, slots=True)
class MedicationEntry:
    generic_name: str = ""
    medication_id: str = ""  # ours; empty on create
    external_id: str = ""  # the EHR's; names the record to update when the patient has it
    brand_name: str = ""
    dose: str = ""
    frequency: str = ""
    route: str = ""
    indication: str = ""
    prescribed_by: str = ""
    is_emergency_medication: bool = False
    coding: CodingText | None = None

    def checked(self, where: str = "medication") -> tuple[str | None, patients.MedicationInput]:
        med = patients.MedicationInput(
            generic_name=_required(f"{where}.generic_name", self.generic_name),
            brand_name=check_text(f"{where}.brand_name", self.brand_name),
            dosage=check_text(f"{where}.dose", self.dose),
            frequency=check_text(f"{where}.frequency", self.frequency),
            route=check_text(f"{where}.route", self.route),
            indication=check_text(f"{where}.indication", self.indication),
            prescribed_by=check_text(f"{where}.prescribed_by", self.prescribed_by),
            is_emergency_medication=self.is_emergency_medication,
            coding=check_coding(f"{where}.coding", self.coding, MEDICATION_SYSTEMS),
            external_id=check_external_id(f"{where}.external_id", self.external_id),
        )
        mid = check_id(f"{where}.medication_id", self.medication_id) if self.medication_id else None
        return mid, med


@dataclass(frozen=True, slots=True)
class AllergyEntry:
    allergen: str = ""
    category: str = ""
    severity: str = ""
    reactions: tuple[str, ...] = ()
    emergency_medication: str = ""
    coding: CodingText | None = None
    allergy_id: str = ""
    external_id: str = ""

    def checked(self, where: str = "allergy") -> tuple[str | None, patients.AllergyInput]:
        category = self.category.strip().upper()
        if category not in ALLERGY_CATEGORIES:
            raise invalid(f"{where}.category", "must be DRUG, FOOD, ENVIRONMENTAL, INSECT, LATEX or OTHER")
        severity = self.severity.strip().upper()
        if severity not in ALLERGY_SEVERITIES:
            raise invalid(f"{where}.severity", "must be MILD, MODERATE, SEVERE or ANAPHYLACTIC")
        if len(self.reactions) > MAX_REACTIONS:
            raise invalid(f"{where}.reactions", f"at most {MAX_REACTIONS}")
        reactions = tuple(
            r for i, raw in enumerate(self.reactions) if (r := check_text(f"{where}.reactions[{i}]", raw)) is not None
        )
        allergy = patients.AllergyInput(
            _required(f"{where}.allergen", self.allergen),
            category,
            severity,
            reactions,
            check_text(f"{where}.emergency_medication", self.emergency_medication),
            check_coding(f"{where}.coding", self.coding, ALLERGEN_SYSTEMS),
            check_external_id(f"{where}.external_id", self.external_id),
        )
        aid = check_id(f"{where}.allergy_id", self.allergy_id) if self.allergy_id else None
        return aid, allergy


@dataclass(frozen=True, slots=True)
class ConditionEntry:
    name: str = ""
    code: str = ""
    is_critical: bool = False
    condition_id: str = ""
    external_id: str = ""

    def checked(self, where: str = "condition") -> tuple[str | None, patients.ConditionInput]:
        condition = patients.ConditionInput(
            _required(f"{where}.name", self.name),
            check_condition_code(f"{where}.code", self.code),
            None,
            self.is_critical,
            check_external_id(f"{where}.external_id", self.external_id),
        )
        cid = check_id(f"{where}.condition_id", self.condition_id) if self.condition_id else None
        return cid, condition


@dataclass(frozen=True, slots=True)
class ReadingEntry:
    """A reading as a door received it: a reading type (or alias) or a LOINC coding, or both (which
    must agree); the value in `unit` as written (UCUM, or a common laboratory spelling). Stored as the
    lab catalog's canonical type, value and unit (engine.labs)."""

    reading_type: str = ""
    value: float = 0.0
    unit: str = ""
    taken_at: datetime | None = None  # aware; None: now
    coding: CodingText | None = None  # LOINC

    def checked(self, where: str = "reading") -> patients.BiometricInput:
        rtype = self.reading_type.strip()
        if rtype and not _READING_TYPE.match(rtype.lower()):
            raise invalid(f"{where}.reading_type", "must be a lower-case name such as egfr or potassium")
        loinc = None
        coding = self.coding
        if coding is not None and (coding.system.strip() or coding.code.strip() or coding.display.strip()):
            system = check_text(f"{where}.coding.system", coding.system, required=True)
            loinc = check_text(f"{where}.coding.code", coding.code, required=True, limit=MAX_CODE)
            check_text(f"{where}.coding.display", coding.display, limit=MAX_DISPLAY)
            assert system is not None
            if system.strip().rstrip("/").lower() not in LOINC_SYSTEMS:
                raise invalid(f"{where}.coding.system", "must be LOINC (http://loinc.org)")
        if not rtype and loinc is None:
            raise invalid(f"{where}.reading_type", "a reading type or a LOINC coding is required")
        unit = check_text(f"{where}.unit", self.unit)
        if self.taken_at is not None and self.taken_at > datetime.now(UTC) + timedelta(minutes=5):
            raise invalid(f"{where}.taken_at", "is in the future")
        try:
            lab = lab_catalog().reading(self.value, unit, reading_type=rtype or None, loinc=loinc)
        except LabInputError as exc:
            raise invalid(f"{where}.{exc.field}", exc.message) from None
        return patients.BiometricInput(lab.reading_type, lab.value, lab.unit, self.taken_at)


SEXES = ("female", "male", "other", "unknown")


@dataclass(frozen=True, slots=True)
class PregnancyEntry:
    status: str = ""  # pregnant | not_pregnant | unknown (clears)
    recorded_at: datetime | None = None  # aware; None: now
    gestational_weeks: int | None = None
    gestational_days: int | None = None
    estimated_delivery_date: str = ""  # YYYY-MM-DD


@dataclass(frozen=True, slots=True)
class LactationEntry:
    status: str = ""  # lactating | not_lactating | unknown (clears)
    recorded_at: datetime | None = None


def _when(field: str, value: datetime | None, now: datetime) -> datetime:
    if value is None:
        return now
    if value > now + timedelta(minutes=5):
        raise invalid(field, "is in the future")
    return value


def _iso_date(field: str, value: str) -> date:
    try:
        return date.fromisoformat(value.strip())
    except ValueError:
        raise invalid(field, "must be a date, YYYY-MM-DD") from None


@dataclass(frozen=True, slots=True)
class DemographicsEntry:
    """A PutDemographics as a door received it; empty fields (None parts) keep what is stored."""

    birth_date: str = ""
    sex: str = ""
    pregnancy: PregnancyEntry | None = None
    lactation: LactationEntry | None = None

    def checked(self) -> patients.DemographicsInput:
        now = datetime.now(UTC)
        birth = None
        if self.birth_date:
            birth = _iso_date("birth_date", self.birth_date)
            try:
                check_birth_date(birth, now.date())
            except DemographicInputError as exc:
                field, _, why = str(exc).partition(": ")
                raise invalid(field, why) from None
        sex = None
        if self.sex:
            sex = self.sex.strip().lower()
            if sex not in SEXES:
                raise invalid("sex", f"must be one of {', '.join(SEXES)}")
        pregnancy = None
        if self.pregnancy is not None:
            p = self.pregnancy
            status = p.status.strip().lower()
            if status not in ("pregnant", "not_pregnant", "unknown"):
                raise invalid("pregnancy.status", "must be pregnant, not_pregnant or unknown")
            recorded = _when("pregnancy.recorded_at", p.recorded_at, now)
            has_ga = p.gestational_weeks is not None or p.gestational_days is not None
            if (has_ga or p.estimated_delivery_date) and status != "pregnant":
                what = "gestational_weeks" if has_ga else "estimated_delivery_date"
                raise invalid(f"pregnancy.{what}", "only with status pregnant")
            days = None
            if has_ga:
                if p.gestational_weeks is None:
                    raise invalid("pregnancy.gestational_weeks", "is required with gestational_days")
                try:
                    days = check_gestation(p.gestational_weeks, p.gestational_days or 0)
                except DemographicInputError as exc:
                    field, _, why = str(exc).partition(": ")
                    raise invalid(field, why) from None
            edd = None
            if p.estimated_delivery_date:
                edd = _iso_date("pregnancy.estimated_delivery_date", p.estimated_delivery_date)
                implied = GESTATION_DAYS - (edd - recorded.date()).days
                if not 0 <= implied <= MAX_GESTATIONAL_WEEKS * 7:
                    raise invalid(
                        "pregnancy.estimated_delivery_date",
                        f"implies a gestational age outside 0 to {MAX_GESTATIONAL_WEEKS} weeks on recorded_at",
                    )
            pregnancy = patients.PregnancyInput(None if status == "unknown" else status, recorded, days, edd)
        lactation = None
        if self.lactation is not None:
            status = self.lactation.status.strip().lower()
            if status not in ("lactating", "not_lactating", "unknown"):
                raise invalid("lactation.status", "must be lactating, not_lactating or unknown")
            recorded = _when("lactation.recorded_at", self.lactation.recorded_at, now)
            lactation = patients.LactationInput(None if status == "unknown" else status == "lactating", recorded)
        if birth is None and sex is None and pregnancy is None and lactation is None:
            raise invalid("birth_date", "nothing to write: give birth_date, sex, pregnancy or lactation")
        return patients.DemographicsInput(birth, sex, pregnancy, lactation)


def _refuse_male_pregnancy(record: patients.PatientRecord, demo: patients.DemographicsInput) -> None:
    """Judgement (README): the record's sex is the sex used for clinical decisions; a pregnancy or
    lactation on a record whose sex is male is a contradiction the rules would read two ways (their
    `sex != male` guards), so it is refused, naming the field, until the sex is recorded as female or
    other (in the same call or before)."""
    sex = demo.sex if demo.sex is not None else (record.profile.get("sex") or "").strip().lower()
    if sex != "male":
        return
    if demo.pregnancy is not None and demo.pregnancy.status == "pregnant":
        raise invalid("pregnancy.status", "pregnant is refused for a record whose sex is male: record sex first")
    if demo.lactation is not None and demo.lactation.lactating:
        raise invalid("lactation.status", "lactating is refused for a record whose sex is male: record sex first")
    stored_pregnant = record.profile.get("pregnancy_status") == "pregnant" and demo.pregnancy is None
    stored_lactating = record.profile.get("lactation_status") == "lactating" and demo.lactation is None
    if demo.sex == "male" and (stored_pregnant or stored_lactating):
        raise invalid("sex", "male is refused while the record holds a pregnancy or lactation: clear it in this call")


@dataclass(frozen=True, slots=True)
class RecordWritten:
    id: str
    profile_version: int


@dataclass(frozen=True, slots=True)
class MedicationsReplaced:
    medication_ids: tuple[str, ...]  # one per entry, in the order given
    deactivated_ids: tuple[str, ...]
    created: int
    updated: int
    unchanged: int
    profile_version: int


@dataclass(frozen=True, slots=True)
class MedicationView:
    medication_id: str
    external_id: str
    generic_name: str
    brand_name: str
    dose: str
    frequency: str
    route: str
    indication: str
    prescribed_by: str
    is_emergency_medication: bool
    coding: CodingText | None


@dataclass(frozen=True, slots=True)
class AllergyView:
    allergy_id: str
    external_id: str
    allergen: str
    category: str
    severity: str
    reactions: tuple[str, ...]
    emergency_medication: str
    coding: CodingText | None


@dataclass(frozen=True, slots=True)
class ConditionView:
    condition_id: str
    external_id: str
    name: str
    code: str
    is_critical: bool


@dataclass(frozen=True, slots=True)
class ReadingView:
    reading_id: str
    reading_type: str
    value: float
    unit: str
    taken_at: datetime


@dataclass(frozen=True, slots=True)
class PregnancyView:
    status: str  # pregnant | not_pregnant
    recorded_at: datetime | None
    gestational_weeks: int | None  # on recorded_at
    gestational_days: int | None
    estimated_delivery_date: str  # YYYY-MM-DD or ""


@dataclass(frozen=True, slots=True)
class LactationView:
    lactating: bool
    recorded_at: datetime | None


@dataclass(frozen=True, slots=True)
class HealthProfileView:
    patient_id: str
    version: int
    subscription_tier: str
    age: int | None
    sex: str
    pregnancy_status: str
    medications: tuple[MedicationView, ...]
    allergies: tuple[AllergyView, ...]
    conditions: tuple[ConditionView, ...]
    latest_biometrics: tuple[ReadingView, ...]
    # Categories the caller's consent does not cover: absent from this answer, not empty.
    withheld_categories: tuple[str, ...]
    birth_date: str = ""
    pregnancy: PregnancyView | None = None
    lactation: LactationView | None = None


@dataclass(frozen=True, slots=True)
class ConsentGrant:
    grantee_user_id: str
    categories: tuple[str, ...]
    expires_in_days: int = 0  # 0: no expiry
    purpose: str = ""


def _coding_view(stored: dict[str, Any] | None) -> CodingText | None:
    if stored is None:
        return None
    return CodingText(SYSTEM_URIS[stored["system"]], stored["code"], stored.get("display") or "")


def _profile_view(rec: patients.PatientRecord) -> HealthProfileView:
    return HealthProfileView(
        patient_id=rec.patient_id,
        version=rec.version,
        subscription_tier=rec.subscription_tier,
        age=rec.age(),
        sex=rec.profile.get("sex") or "",
        pregnancy_status=rec.profile.get("pregnancy_status") or "",
        medications=tuple(
            MedicationView(
                medication_id=m["id"],
                external_id=m.get("external_id") or "",
                generic_name=m["generic_name"],
                brand_name=m["brand_name"] or "",
                dose=m["dosage"] or "",
                frequency=m["frequency"] or "",
                route=m["route"] or "",
                indication=m["indication"] or "",
                prescribed_by=m["prescribed_by"] or "",
                is_emergency_medication=m["is_emergency_medication"],
                coding=_coding_view(m["coding"]),
            )
            for m in rec.medications
        ),
        allergies=tuple(
            AllergyView(
                allergy_id=a["id"],
                external_id=a.get("external_id") or "",
                allergen=a["allergen"],
                category=a["allergen_category"],
                severity=a["severity"],
                reactions=tuple(a["reactions"]),
                emergency_medication=a["emergency_medication"] or "",
                coding=_coding_view(a["coding"]),
            )
            for a in rec.allergies
        ),
        conditions=tuple(
            ConditionView(
                condition_id=c["id"],
                external_id=c.get("external_id") or "",
                name=c["name"],
                code=c["code"] or "",
                is_critical=c["is_critical"],
            )
            for c in rec.conditions
        ),
        latest_biometrics=tuple(
            ReadingView(
                reading_id=b["id"],
                reading_type=b["reading_type"],
                value=b["value"],
                unit=b["unit"] or "",
                taken_at=datetime.fromisoformat(b["taken_at"]),
            )
            for b in rec.biometrics
        ),
        withheld_categories=tuple(sorted(rec.withheld)),
        birth_date=rec.date_of_birth.isoformat() if rec.date_of_birth else "",
        pregnancy=_pregnancy_view(rec),
        lactation=(
            LactationView(lact.lactating, lact.recorded_at) if (lact := rec.lactation()) is not None else None
        ),
    )


def _pregnancy_view(rec: patients.PatientRecord) -> PregnancyView | None:
    preg = rec.pregnancy()
    if preg is None:
        return None
    days = preg.gestational_days
    return PregnancyView(
        status=preg.status,
        recorded_at=preg.recorded_at,
        gestational_weeks=None if days is None else days // 7,
        gestational_days=None if days is None else days % 7,
        estimated_delivery_date=preg.estimated_delivery.isoformat() if preg.estimated_delivery else "",
    )


class Records:
    def __init__(self, db: Database, keys: KeyStore, calls: Calls, *, max_active_items: int = 100) -> None:
        self.db = db
        self.keys = keys
        self.calls = calls
        # PRANEYA_MAX_ACTIVE_ITEMS: active items per patient and category, refused on write (the
        # evaluation use case refuses a record that holds more).
        self.max_active_items = max_active_items

    # -- writes ----------------------------------------------------------------------------------

    def _write(
        self,
        name: str,
        principal: Principal,
        meta: RequestMeta,
        patient_id: str,
        write: Callable[[Connection], str],
        door: str,
    ) -> RecordWritten:
        def run(principal: Principal, meta: RequestMeta) -> RecordWritten:
            check_id("patient_id", patient_id)
            with self.db.scoped(principal, meta, verify=True) as conn:
                row_id = write(conn)
                version = patients.profile_version(conn, patient_id)
            return RecordWritten(row_id, version)

        return self.calls.run(name, principal, meta, run, scopes=(RECORDS_WRITE,), door=door)

    def put_medication(
        self, principal: Principal, meta: RequestMeta, patient_id: str, entry: MedicationEntry, *, door: str = "grpc"
    ) -> RecordWritten:
        """Creates or updates one medication: by our id (which must exist), or by the EHR's id (an
        upsert: the patient's record with that identifier, active or not, else a new one)."""

        def write(conn: Connection) -> str:
            mid, med = entry.checked()
            return patients.put_medication(
                conn,
                self.keys,
                patient_id,
                med,
                medication_id=mid,
                must_exist=mid is not None,
                max_active=self.max_active_items,
            )

        return self._write("PutMedication", principal, meta, patient_id, write, door)

    def replace_active_medications(
        self,
        principal: Principal,
        meta: RequestMeta,
        patient_id: str,
        entries: Sequence[MedicationEntry],
        *,
        door: str = "grpc",
    ) -> MedicationsReplaced:
        """The patient's active medications become exactly `entries`, in one transaction or not at all:
        each is matched by its EHR id, else by our id; active ones not matched are deactivated; new
        ones are created. An empty list deactivates them all."""

        def run(principal: Principal, meta: RequestMeta) -> MedicationsReplaced:
            check_id("patient_id", patient_id)
            if len(entries) > self.max_active_items:
                raise invalid(
                    "medications",
                    f"at most {self.max_active_items} (PRANEYA_MAX_ACTIVE_ITEMS), the bound on active medications",
                )
            checked = [e.checked(f"medications[{i}]") for i, e in enumerate(entries)]
            _refuse_repeats("external_id", [med.external_id for _, med in checked])
            _refuse_repeats("medication_id", [mid for mid, _ in checked])
            with self.db.scoped(principal, meta, verify=True) as conn:
                done = patients.replace_active_medications(conn, self.keys, patient_id, checked)
                # Each changed row has its audit row from the trigger; this one ties them to the call.
                service_repo.write_audit(
                    conn,
                    audit_id=str(uuid.uuid4()),
                    tenant_id=principal.tenant_id,
                    user_id=principal.user_id,
                    action="REPLACE_ACTIVE_MEDICATIONS",
                    outcome="SUCCESS",
                    patient_id=patient_id,
                    resource_type="healthcare.medications",
                    phi_accessed=True,
                    risk_score=0.3,
                    flags=["PHI_WRITE", *(["CLIENT"] if principal.client_id else [])],
                    details={
                        "request_id": meta.request_id,
                        "medication_ids": list(done.medication_ids),
                        "deactivated_ids": list(done.deactivated_ids),
                        "created": done.created,
                        "updated": done.updated,
                        "unchanged": done.unchanged,
                        **_caller(principal),
                    },
                )
            return MedicationsReplaced(
                medication_ids=done.medication_ids,
                deactivated_ids=done.deactivated_ids,
                created=done.created,
                updated=done.updated,
                unchanged=done.unchanged,
                profile_version=done.version,
            )

        return self.calls.run(
            "ReplaceActiveMedications",
            principal,
            meta,
            run,
            scopes=(RECORDS_WRITE,),
            on_failure=audit_failure("REPLACE_ACTIVE_MEDICATIONS", patient_id or None),
            door=door,
        )

    def deactivate_medication(
        self, principal: Principal, meta: RequestMeta, patient_id: str, medication_id: str, *, door: str = "grpc"
    ) -> RecordWritten:
        def write(conn: Connection) -> str:
            mid = check_id("medication_id", medication_id)
            patients.deactivate_medication(conn, self.keys, patient_id, mid)
            return mid

        return self._write("DeactivateMedication", principal, meta, patient_id, write, door)

    def put_allergy(
        self, principal: Principal, meta: RequestMeta, patient_id: str, entry: AllergyEntry, *, door: str = "grpc"
    ) -> RecordWritten:
        def write(conn: Connection) -> str:
            aid, allergy = entry.checked()
            return patients.put_allergy(
                conn,
                self.keys,
                patient_id,
                allergy,
                allergy_id=aid,
                must_exist=aid is not None,
                max_active=self.max_active_items,
            )

        return self._write("PutAllergy", principal, meta, patient_id, write, door)

    def put_condition(
        self, principal: Principal, meta: RequestMeta, patient_id: str, entry: ConditionEntry, *, door: str = "grpc"
    ) -> RecordWritten:
        def write(conn: Connection) -> str:
            cid, condition = entry.checked()
            return patients.put_condition(
                conn,
                self.keys,
                patient_id,
                condition,
                condition_id=cid,
                must_exist=cid is not None,
                max_active=self.max_active_items,
            )

        return self._write("PutCondition", principal, meta, patient_id, write, door)

    def put_reading(
        self,
        principal: Principal,
        meta: RequestMeta,
        patient_id: str,
        entry: ReadingEntry | Callable[[], ReadingEntry],
        *,
        door: str = "grpc",
    ) -> RecordWritten:
        """`entry` may be a function that builds it: a door whose conversion can fail (a timestamp out
        of range) runs it inside the call, so its failure is counted and hidden from an unverified
        caller like any other."""

        def write(conn: Connection) -> str:
            reading = (entry if isinstance(entry, ReadingEntry) else entry()).checked()
            return patients.put_biometric(conn, self.keys, patient_id, reading, max_active=self.max_active_items)

        return self._write("PutBiometricReading", principal, meta, patient_id, write, door)

    def put_demographics(
        self,
        principal: Principal,
        meta: RequestMeta,
        patient_id: str,
        entry: DemographicsEntry | Callable[[], DemographicsEntry],
        *,
        door: str = "grpc",
    ) -> RecordWritten:
        """Birth date, sex, pregnancy and lactation: checked whole before anything is written, then
        written in one transaction (with the record verified and resealed)."""

        def write(conn: Connection) -> str:
            demo = (entry if isinstance(entry, DemographicsEntry) else entry()).checked()
            patients.put_demographics(conn, self.keys, patient_id, demo, check=_refuse_male_pregnancy)
            return patient_id

        return self._write("PutDemographics", principal, meta, patient_id, write, door)

    # -- reads -----------------------------------------------------------------------------------

    def health_profile(
        self, principal: Principal, meta: RequestMeta, patient_id: str, *, door: str = "grpc"
    ) -> HealthProfileView:
        def run(principal: Principal, meta: RequestMeta) -> HealthProfileView:
            check_id("patient_id", patient_id)
            with self.db.scoped(principal, meta) as conn:
                rec = patients.read_patient(conn, self.keys, patient_id, expected_role=principal.role)
                service_repo.write_audit(
                    conn,
                    audit_id=str(uuid.uuid4()),
                    tenant_id=principal.tenant_id,
                    user_id=principal.user_id,
                    action="READ_HEALTH_PROFILE",
                    outcome="SUCCESS",
                    patient_id=patient_id,
                    resource_type="healthcare.health_profiles",
                    resource_id=rec.profile_id,
                    phi_accessed=True,
                    risk_score=0.2,
                    flags=["PHI_READ", *(["CLIENT"] if principal.client_id else [])],
                    details={
                        "request_id": meta.request_id,
                        **_caller(principal),
                    },
                )
            return _profile_view(rec)

        return self.calls.run(
            "GetHealthProfile",
            principal,
            meta,
            run,
            scopes=(EVALUATE_STORED,),
            on_failure=audit_failure("READ_HEALTH_PROFILE", patient_id or None),
            door=door,
        )

    # -- consent (the patient's own; not for clients) ---------------------------------------------

    def grant_consent(self, principal: Principal, meta: RequestMeta, grant: ConsentGrant, *, door: str = "grpc") -> str:
        def run(principal: Principal, meta: RequestMeta) -> str:
            grantee = check_id("grantee_user_id", grant.grantee_user_id)
            if not 0 <= grant.expires_in_days <= 3650:
                raise invalid("expires_in_days", "must be between 0 (no expiry) and 3650")
            categories = [c.strip().upper() for c in grant.categories]
            with self.db.scoped(principal, meta, verify=True) as conn:
                return grant_consent(
                    conn,
                    self.keys,
                    principal.tenant_id,
                    principal.user_id,
                    grantee,
                    categories,
                    timedelta(days=grant.expires_in_days) if grant.expires_in_days else None,
                    check_text("purpose", grant.purpose),
                )

        return self.calls.run("GrantConsent", principal, meta, run, door=door)

    def revoke_consent(self, principal: Principal, meta: RequestMeta, consent_id: str, *, door: str = "grpc") -> None:
        def run(principal: Principal, meta: RequestMeta) -> None:
            cid = check_id("consent_id", consent_id)
            with self.db.scoped(principal, meta, verify=True) as conn:
                if not revoke_consent(conn, cid):
                    raise LookupError("consent not found")

        self.calls.run("RevokeConsent", principal, meta, run, door=door)


def _caller(principal: Principal) -> dict[str, str]:
    """A registered client's identity, and the user it acts for, beside the audit row's user."""
    return {
        **({"client_id": principal.client_id} if principal.client_id else {}),
        **({"acting_for": principal.acting_for} if principal.acting_for else {}),
    }


def _refuse_repeats(field: str, values: Sequence[str | None]) -> None:
    first: dict[str, int] = {}
    for i, value in enumerate(values):
        if value is None:
            continue
        if value in first:
            raise invalid(f"medications[{i}].{field}", f"repeats medications[{first[value]}].{field}")
        first[value] = i
