"""Patient records: the decrypted snapshot the engine evaluates, and encrypted writes.

Reading a patient for evaluation is the service's main cost, so the snapshot is one statement:
the profile, its active medications, allergies and conditions, and the latest biometric reading
of each type, aggregated as JSON by the server. Row-level security decides what that statement
sees; a patient the caller may not see is indistinguishable from one that does not exist.

Every read verifies the profile's integrity hash; every write recomputes it in the same
transaction. The audit rows of writes come from the database's triggers.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import Connection, text

from engine.identity import Coding
from engine.model import (
    AllergyFact,
    BiometricFact,
    ConditionFact,
    LactationFact,
    MedicationFact,
    PatientSnapshot,
    PregnancyFact,
)
from store.crypto import TenantKeyring
from store.keys import KeyStore
from store.session import PrincipalMismatch, Tx

__all__ = [
    "SNAPSHOT_STATEMENT",
    "AllergyInput",
    "BiometricInput",
    "CodedAs",
    "ConditionInput",
    "DemographicsInput",
    "ExternalIdTaken",
    "IntegrityError",
    "LactationInput",
    "MedicationInput",
    "PatientNotFound",
    "PatientRecord",
    "PregnancyInput",
    "PrincipalMismatch",
    "ProfileInput",
    "ReplacedMedications",
    "SameRecordTwice",
    "TooManyItems",
    "create_profile",
    "deactivate_medication",
    "profile_version",
    "put_allergy",
    "put_biometric",
    "put_condition",
    "put_demographics",
    "put_medication",
    "read_patient",
    "read_snapshot_rows",
    "refresh_integrity",
    "replace_active_medications",
]


class PatientNotFound(LookupError):
    """No such patient, or not visible to this principal (the two are deliberately the same)."""


class IntegrityError(RuntimeError):
    """The stored integrity hash does not match the profile's content: refuse, never evaluate."""


class ExternalIdTaken(RuntimeError):
    """A write names a record by our id and by an EHR id that already names another of the patient's
    records. Says which kind of record, never the identifier."""

    def __init__(self, label: str) -> None:
        super().__init__(f"external_id already names another {label} of this patient")


class SameRecordTwice(ValueError):
    """Two entries of one replacement list land on the same stored record."""

    def __init__(self, field: str, first: int, second: int) -> None:
        super().__init__(f"{field}[{second}] names the same record as {field}[{first}]")
        self.field = field


class TooManyItems(RuntimeError):
    """A write would take a category of the record past its bound. Names the limit, never the items."""

    def __init__(self, category: str, limit: int) -> None:
        super().__init__(
            f"the patient already has {limit} active {category}, the limit (PRANEYA_MAX_ACTIVE_ITEMS);"
            f" deactivate one first"
        )
        self.category = category
        self.limit = limit


def _moment(text: Any) -> datetime | None:
    if not text:
        return None
    moment = datetime.fromisoformat(str(text))
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex}"


@dataclass(frozen=True, slots=True)
class ProfileInput:
    sex: str | None = None
    pregnancy_status: str | None = None  # "pregnant" | "not_pregnant" | None (unknown)
    blood_type: str | None = None
    notes: str | None = None
    subscription_tier: str = "BASIC"


@dataclass(frozen=True, slots=True)
class CodedAs:
    """The code a medication or an allergen was recorded with, and its display text if given."""

    coding: Coding
    display: str | None = None

    def stored(self) -> str:
        # The plaintext of encrypted_coding. The code names the drug: it is PHI like the name.
        doc = {"system": self.coding.system, "code": self.coding.code}
        if self.display is not None:
            doc["display"] = self.display
        return _canonical(doc).decode("utf-8")


def _coding_of(stored: Mapping[str, Any] | None) -> Coding | None:
    # Read back only after the row's section MAC verified: what was sealed is what was written.
    return None if stored is None else Coding(str(stored["system"]), str(stored["code"]))


@dataclass(frozen=True, slots=True)
class MedicationInput:
    generic_name: str
    brand_name: str | None = None
    dosage: str | None = None
    frequency: str | None = None
    route: str | None = None
    indication: str | None = None
    prescribed_by: str | None = None
    is_emergency_medication: bool = False
    coding: CodedAs | None = None
    # The EHR's identifier of the record ("MedicationRequest/123", "system|value"); None keeps the
    # one stored (an update that does not name it does not unlink the record).
    external_id: str | None = None


@dataclass(frozen=True, slots=True)
class AllergyInput:
    allergen: str
    allergen_category: str
    severity: str
    reactions: tuple[str, ...] = ()
    emergency_medication: str | None = None
    coding: CodedAs | None = None
    external_id: str | None = None


@dataclass(frozen=True, slots=True)
class ConditionInput:
    name: str
    code: str | None = None
    notes: str | None = None
    is_critical: bool = False
    external_id: str | None = None


@dataclass(frozen=True, slots=True)
class BiometricInput:
    reading_type: str
    value: float
    unit: str | None = None
    taken_at: datetime | None = None
    trend_direction: str | None = None


@dataclass(frozen=True, slots=True)
class PatientRecord:
    """A patient's decrypted, integrity-checked clinical content.

    Medication and allergy rows carry `coding`: None, or {"system", "code"[, "display"]}; medication,
    allergy and condition rows carry `external_id`: the EHR's identifier of the record, or None.
    """

    patient_id: str
    tenant_id: str
    profile_id: str
    version: int
    subscription_tier: str
    date_of_birth: date | None
    profile: dict[str, Any]
    medications: tuple[dict[str, Any], ...]
    allergies: tuple[dict[str, Any], ...]
    conditions: tuple[dict[str, Any], ...]
    biometrics: tuple[dict[str, Any], ...] = field(default=())
    # Categories the caller's consent does not cover: their sections are absent, not empty.
    withheld: frozenset[str] = frozenset()
    caller_role: str | None = None

    def age(self, today: date | None = None) -> int | None:
        if self.date_of_birth is None:
            return None
        t = today or date.today()
        dob = self.date_of_birth
        return t.year - dob.year - ((t.month, t.day) < (dob.month, dob.day))

    def pregnancy(self) -> PregnancyFact | None:
        """The recorded pregnancy status with its date and gestational data, or None."""
        status = self.profile.get("pregnancy_status")
        if status not in ("pregnant", "not_pregnant"):
            return None
        recorded = _moment(self.profile.get("pregnancy_recorded_at"))
        gestation = self.profile.get("gestational_age")
        days = None
        if gestation:
            weeks, _, extra = str(gestation).partition("+")
            days = int(weeks) * 7 + int(extra or 0)
        edd = self.profile.get("estimated_delivery_date")
        return PregnancyFact(
            status,
            recorded,
            days,
            recorded.date() if recorded is not None and days is not None else None,
            date.fromisoformat(edd) if edd else None,
        )

    def lactation(self) -> LactationFact | None:
        status = self.profile.get("lactation_status")
        if status not in ("lactating", "not_lactating"):
            return None
        return LactationFact(status == "lactating", _moment(self.profile.get("lactation_recorded_at")))

    def to_snapshot(self, today: date | None = None) -> PatientSnapshot:
        status = self.profile.get("pregnancy_status")
        return PatientSnapshot(
            patient_id=self.patient_id,
            tenant_id=self.tenant_id,
            age=self.age(today),
            sex=self.profile.get("sex"),
            birth_date=self.date_of_birth,
            pregnant=None if status is None else status == "pregnant",
            pregnancy=self.pregnancy(),
            lactation=self.lactation(),
            subscription_tier=self.subscription_tier,
            medications=tuple(
                MedicationFact(
                    id=m["id"],
                    name=m["generic_name"],
                    dose=m["dosage"],
                    route=m["route"],
                    frequency=m["frequency"],
                    coding=_coding_of(m["coding"]),
                )
                for m in self.medications
            ),
            allergies=tuple(
                AllergyFact(
                    id=a["id"],
                    allergen=a["allergen"],
                    category=a["allergen_category"],
                    severity=a["severity"],
                    reactions=tuple(a["reactions"]),
                    coding=_coding_of(a["coding"]),
                )
                for a in self.allergies
            ),
            conditions=tuple(ConditionFact(id=c["id"], name=c["name"], code=c["code"]) for c in self.conditions),
            biometrics=tuple(
                BiometricFact(
                    id=b["id"],
                    reading_type=b["reading_type"],
                    value=b["value"],
                    unit=b["unit"],
                    observed_at=_moment(b.get("taken_at")),
                )
                for b in self.biometrics
            ),
        )


_SNAPSHOT = text("""
-- The caller first, as the database knows them: the token's user, if an active user of its tenant
-- (or its client, if an active client of its tenant: CLIENT). Always one row: a token whose user is
-- not that, with the role it claims, is refused however well signed, and the answer must not depend
-- on whether the patient exists.
SELECT public.current_caller_role() AS caller_role,
       s.*
FROM (VALUES (true)) AS one (x)
LEFT JOIN (
SELECT p.id, p.tenant_id, p.user_id, p.version, p.subscription_tier::text AS tier, p.data_integrity_hash,
       p.encrypted_sex, p.encrypted_pregnancy_status, p.encrypted_blood_type, p.encrypted_notes,
       p.encrypted_birth_date, p.encrypted_pregnancy_recorded_at, p.encrypted_gestational_age,
       p.encrypted_estimated_delivery_date, p.encrypted_lactation_status, p.encrypted_lactation_recorded_at,
       u.encrypted_date_of_birth,
       (SELECT COALESCE(jsonb_agg(to_jsonb(m) ORDER BY m.id), '[]')::text FROM (
            SELECT id, encrypted_generic_name, encrypted_brand_name, encrypted_dosage, encrypted_frequency,
                   encrypted_route, encrypted_indication, encrypted_prescribed_by, is_emergency_medication,
                   encrypted_coding, encrypted_external_id
            FROM healthcare.medications WHERE health_profile_id = p.id AND is_active) m) AS medications,
       (SELECT COALESCE(jsonb_agg(to_jsonb(a) ORDER BY a.id), '[]')::text FROM (
            SELECT id, encrypted_allergen, allergen_category, severity, encrypted_reactions,
                   encrypted_emergency_medication, encrypted_coding, encrypted_external_id
            FROM healthcare.allergies WHERE health_profile_id = p.id AND is_active) a) AS allergies,
       (SELECT COALESCE(jsonb_agg(to_jsonb(c) ORDER BY c.id), '[]')::text FROM (
            SELECT id, encrypted_name, encrypted_code, encrypted_notes, is_critical, encrypted_external_id
            FROM healthcare.conditions WHERE health_profile_id = p.id AND is_active) c) AS conditions,
       (SELECT COALESCE(jsonb_agg(to_jsonb(b) ORDER BY b.reading_type), '[]')::text FROM (
            SELECT DISTINCT ON (reading_type) id, reading_type, encrypted_value, encrypted_unit, taken_at
            FROM healthcare.biometric_readings WHERE user_id = p.user_id AND tenant_id = p.tenant_id
            ORDER BY reading_type, taken_at DESC, id) b) AS biometrics,
       -- Which categories this principal may see (RLS hides the others' rows; an empty list must
       -- not be mistaken for "none recorded" nor for tampering). Mirrors the health-table policies.
       v.sees_all,
       v.sees_all OR public.can_access_family_data(p.user_id, 'MEDICATIONS') AS sees_medications,
       v.sees_all OR public.can_access_family_data(p.user_id, 'ALLERGIES') AS sees_allergies,
       v.sees_all OR public.can_access_family_data(p.user_id, 'CONDITIONS') AS sees_conditions,
       v.sees_all OR public.can_access_family_data(p.user_id, 'BIOMETRICS') AS sees_biometrics
FROM healthcare.health_profiles p
JOIN public.users u ON u.id = p.user_id AND u.tenant_id = p.tenant_id
CROSS JOIN LATERAL (SELECT COALESCE(p.user_id = public.current_user_id()
                                 OR public.current_healthcare_role() IN ('CLINICAL_ADVISOR', 'SUPER_ADMIN')
                                 OR public.has_emergency_access(p.user_id)
                                 -- a client that reads records (evaluate.stored, records.write)
                                 OR public.current_client_scopes() && ARRAY['evaluate.stored', 'records.write']
                                 -- operators' connections bypass row-level security altogether
                                 OR (SELECT r.rolsuper OR r.rolbypassrls FROM pg_catalog.pg_roles r
                                     WHERE r.rolname = current_user), false) AS sees_all) v
WHERE p.user_id = :patient
  -- When the service passes the role the token claims, the same caller lookup gates the patient's:
  -- a one-time filter, so for a caller who does not match, no patient row is read at all.
  AND (CAST(:caller_role AS text) IS NULL OR public.current_caller_role() = CAST(:caller_role AS text))
) s ON true
""")

_MED = "healthcare.medications"
# The profile's demographic columns (0014), without their `encrypted_` prefix.
_DEMOGRAPHIC = (
    "birth_date",
    "pregnancy_recorded_at",
    "gestational_age",
    "estimated_delivery_date",
    "lactation_status",
    "lactation_recorded_at",
)
_ALG = "healthcare.allergies"
_CND = "healthcare.conditions"
_BIO = "healthcare.biometric_readings"
_PRF = "healthcare.health_profiles"


def _decrypt_row(ring: TenantKeyring, table: str, row: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in row.items():
        if key.startswith("encrypted_"):
            out[key.removeprefix("encrypted_")] = ring.decrypt_optional(table, key, row["id"], value)
        else:
            out[key] = value
    return out


def _canonical(doc: Any) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _section_content(
    profile: Mapping[str, Any],
    medications: Sequence[Mapping[str, Any]],
    allergies: Sequence[Mapping[str, Any]],
    conditions: Sequence[Mapping[str, Any]],
    biometrics: Sequence[Mapping[str, Any]],
) -> dict[str, bytes]:
    """The profile's clinical content, one canonical byte string per consent category.

    One MAC per section, because consent is granted per category: a viewer who may see medications
    but not conditions can still verify what they see, and a hidden section is never mistaken for
    a tampered one. Sections are bound to the profile id so they cannot be moved between profiles.
    BIOMETRICS seals the latest reading of each type (what the engine evaluates): its id, type,
    time, value and unit. A reading relabelled, back-dated (so an older one becomes the latest),
    re-valued or deleted changes that set and fails closed.
    """
    pid = profile["id"]
    sealed = {k: profile[k] for k in ("id", "user_id", "tier", "sex", "pregnancy_status", "blood_type", "notes")}
    # Demographics (0014) join the seal when recorded: a profile without them keeps the form it was
    # sealed in, and one whose value is removed or changed no longer verifies.
    sealed.update({k: profile[k] for k in _DEMOGRAPHIC if profile.get(k) is not None})
    return {
        "PROFILE": _canonical(sealed),
        "MEDICATIONS": _canonical([pid, sorted(map(_sealed_form, medications), key=lambda m: str(m["id"]))]),
        "ALLERGIES": _canonical([pid, sorted(map(_sealed_form, allergies), key=lambda a: str(a["id"]))]),
        "CONDITIONS": _canonical([pid, sorted(map(_sealed_form, conditions), key=lambda c: str(c["id"]))]),
        "BIOMETRICS": _canonical([pid, sorted(map(_sealed_reading, biometrics), key=lambda b: str(b["id"]))]),
    }


def _sealed_reading(row: Mapping[str, Any]) -> Mapping[str, Any]:
    # taken_at arrives as the session's time zone renders it: sealed as UTC, so a reader in another
    # zone computes the same bytes.
    taken = datetime.fromisoformat(str(row["taken_at"])).astimezone(UTC).isoformat(timespec="microseconds")
    return {
        "id": row["id"],
        "reading_type": row["reading_type"],
        "value": float(row["value"]),
        "unit": row["unit"],
        "taken_at": taken,
    }


# Keys added to rows after rows were first sealed (codings: 0006; EHR identifiers: 0012).
_LATER_KEYS = ("coding", "external_id")


def _sealed_form(row: Mapping[str, Any]) -> Mapping[str, Any]:
    # Rows written before a key existed were sealed without it: a row where it is absent keeps that
    # canonical form, so it still verifies. A value removed from a row that had one changes the form
    # all the same (the key disappears), and fails closed like any other edit.
    if any(k in row and row[k] is None for k in _LATER_KEYS):
        return {k: v for k, v in row.items() if not (k in _LATER_KEYS and v is None)}
    return row


# Seal versions. v2 (written before readings were sealed): every section but BIOMETRICS, each MAC
# over "NAME|content". v3 (every write since): BIOMETRICS too, and each MAC also covers "v3", so a
# v3 seal cannot be cut down to a v2 one by dropping its BIOMETRICS part. A v2 seal keeps verifying
# (its readings unbound) until the profile's next write reseals it as v3.
_SEAL_V2 = "v2"
_SEAL_V3 = "v3"
_V2_SECTIONS = frozenset({"PROFILE", "MEDICATIONS", "ALLERGIES", "CONDITIONS"})


def _section_mac(ring: TenantKeyring, seal: str, name: str, data: bytes) -> str:
    bound = name.encode() + b"|" + data
    return ring.integrity_hash(bound if seal == _SEAL_V2 else seal.encode() + b"|" + bound)


def _integrity_value(ring: TenantKeyring, sections: Mapping[str, bytes], seal: str = _SEAL_V3) -> str:
    # Writes always seal as v3; v2 only lets tests build what an earlier release wrote.
    return f"{seal};" + ";".join(
        f"{name}={_section_mac(ring, seal, name, data)}"
        for name, data in sorted(sections.items())
        if seal != _SEAL_V2 or name in _V2_SECTIONS
    )


def _verify_sections(
    ring: TenantKeyring, stored: str | None, sections: Mapping[str, bytes], withheld: frozenset[str]
) -> bool:
    seal, _, body = (stored or "").partition(";")
    if seal == _SEAL_V2:
        sections = {name: data for name, data in sections.items() if name in _V2_SECTIONS}
    elif seal != _SEAL_V3:
        return False
    macs = dict(part.split("=", 1) for part in body.split(";") if "=" in part)
    if set(macs) != set(sections):
        return False
    return all(
        hmac.compare_digest(macs[name], _section_mac(ring, seal, name, data))
        for name, data in sections.items()
        if name not in withheld
    )


def _row_digest(row: Mapping[str, Any]) -> bytes:
    h = hashlib.blake2b(digest_size=32)
    for key, value in row.items():
        if key != "caller_role":
            h.update(key.encode())
            h.update(b"\x1f")
            h.update(repr(value).encode())
            h.update(b"\x1e")
    return h.digest()


def _load(conn: Connection, keys: KeyStore, patient_id: str) -> tuple[PatientRecord, str | None, dict[str, bytes]]:
    row = _fetch(conn, patient_id)
    return _decrypt_snapshot(conn, keys, row)


def _fetch(conn: Tx, patient_id: str, expected_role: str | None = None) -> Any:
    row = conn.execute(_SNAPSHOT, {"patient": patient_id, "caller_role": expected_role}).mappings().one()
    # In this order: whether the patient exists is nobody's business until the caller is known.
    if expected_role is not None and row["caller_role"] != expected_role:
        raise PrincipalMismatch("the caller is not an active user of this tenant with this role")
    if row["id"] is None:
        raise PatientNotFound("patient not found")
    return row


def _decrypt_snapshot(conn: Tx, keys: KeyStore, raw: Any) -> tuple[PatientRecord, str | None, dict[str, bytes]]:
    row = dict(raw)
    for group in ("medications", "allergies", "conditions", "biometrics"):
        row[group] = json.loads(row[group])
    tenant = row["tenant_id"]
    ring = keys.keyring(conn, tenant)
    if _needs_newer_key(ring, row):
        ring = keys.keyring(conn, tenant, refresh=True)
    profile = {
        "id": row["id"],
        "user_id": row["user_id"],
        "tier": row["tier"],
        "sex": ring.decrypt_optional(_PRF, "encrypted_sex", row["id"], row["encrypted_sex"]),
        "pregnancy_status": ring.decrypt_optional(
            _PRF, "encrypted_pregnancy_status", row["id"], row["encrypted_pregnancy_status"]
        ),
        "blood_type": ring.decrypt_optional(_PRF, "encrypted_blood_type", row["id"], row["encrypted_blood_type"]),
        "notes": ring.decrypt_optional(_PRF, "encrypted_notes", row["id"], row["encrypted_notes"]),
        # 0014_patient_demographics (None when not recorded; sealed only when present)
        **{k: ring.decrypt_optional(_PRF, f"encrypted_{k}", row["id"], row[f"encrypted_{k}"]) for k in _DEMOGRAPHIC},
    }
    meds = []
    for m in row["medications"]:
        d = _decrypt_row(ring, _MED, m)
        d["coding"] = json.loads(d["coding"]) if d["coding"] else None
        meds.append(d)
    allergies = []
    for a in row["allergies"]:
        d = _decrypt_row(ring, _ALG, a)
        d["reactions"] = json.loads(d["reactions"]) if d["reactions"] else []
        d["coding"] = json.loads(d["coding"]) if d["coding"] else None
        allergies.append(d)
    conditions = [_decrypt_row(ring, _CND, c) for c in row["conditions"]]
    biometrics = []
    for b in row["biometrics"]:
        d = _decrypt_row(ring, _BIO, b)
        d["value"] = float(d["value"])
        biometrics.append(d)
    dob_text = ring.decrypt_optional(
        "public.users", "encrypted_date_of_birth", row["user_id"], row["encrypted_date_of_birth"]
    )
    record = PatientRecord(
        patient_id=row["user_id"],
        tenant_id=tenant,
        profile_id=row["id"],
        version=row["version"],
        subscription_tier=row["tier"],
        # The clinical record's birth date (PutDemographics) wins over the account's.
        date_of_birth=date.fromisoformat(birth) if (birth := profile["birth_date"] or dob_text) else None,
        profile=profile,
        medications=tuple(meds),
        allergies=tuple(allergies),
        conditions=tuple(conditions),
        biometrics=tuple(biometrics),
        withheld=frozenset(
            cat
            for cat, seen in (
                ("MEDICATIONS", row["sees_medications"]),
                ("ALLERGIES", row["sees_allergies"]),
                ("CONDITIONS", row["sees_conditions"]),
                ("BIOMETRICS", row["sees_biometrics"]),
            )
            if not seen
        ),
        caller_role=row["caller_role"],
    )
    return record, row["data_integrity_hash"], _section_content(profile, meds, allergies, conditions, biometrics)


def _needs_newer_key(ring: TenantKeyring, row: Any) -> bool:
    # A value written under a key version this process has not loaded yet (rotated elsewhere).
    for value in (row["encrypted_sex"], row["encrypted_pregnancy_status"], row["encrypted_birth_date"]):
        if value and TenantKeyring.version_of(value) not in ring.keys:
            return True
    for group, col in (
        ("medications", "encrypted_generic_name"),
        ("allergies", "encrypted_allergen"),
        ("conditions", "encrypted_name"),
    ):
        for item in row[group]:
            if TenantKeyring.version_of(item[col]) not in ring.keys:
                return True
    return False


def read_patient(
    conn: Tx, keys: KeyStore, patient_id: str, *, expected_role: str | None = None
) -> PatientRecord:
    """The decrypted snapshot; raises PatientNotFound, IntegrityError, DecryptionError or PrincipalMismatch.

    Sections the caller's consent withholds are reported in `withheld` and not verified (they were
    not read); every section the caller sees is verified against its MAC.
    """
    row = _fetch(conn, patient_id, expected_role)
    key = _row_digest(row)
    cached = keys.verified_snapshots.get(key)
    if isinstance(cached, PatientRecord):
        return cached
    record, stored, sections = _decrypt_snapshot(conn, keys, row)
    ring = keys.keyring(conn, record.tenant_id)
    if not _verify_sections(ring, stored, sections, record.withheld):
        raise IntegrityError(f"health profile {record.profile_id} failed its integrity check")
    keys.verified_snapshots.put(key, record)
    return record


def refresh_integrity(conn: Connection, keys: KeyStore, patient_id: str) -> int:
    """Recomputes the integrity MACs after a write, in the writer's transaction. Returns the version."""
    record, _, sections = _load(conn, keys, patient_id)
    if record.withheld:
        # Writers see every category (the patient, clinical advisors, super admins): anything less
        # would seal a partial view as the whole record.
        raise PermissionError("this principal may not rewrite the record's integrity seal")
    ring = keys.keyring(conn, record.tenant_id)
    version = conn.execute(
        text(
            "UPDATE healthcare.health_profiles SET data_integrity_hash = :h, last_verified = now()"
            " WHERE id = :id RETURNING version"
        ),
        {"h": _integrity_value(ring, sections), "id": record.profile_id},
    ).scalar_one_or_none()
    if version is None:
        raise PatientNotFound("patient not found")
    return int(version)


_RECORD_EXISTS = {
    table: text(f"SELECT 1 FROM {table} WHERE id = :id AND user_id = :u")  # noqa: S608 - fixed table names
    for table in ("healthcare.medications", "healthcare.allergies", "healthcare.conditions")
}


def _require_record(conn: Connection, table: str, record_id: str, patient_id: str, label: str) -> None:
    # An update names an existing record of this patient that the caller can see; anything else is
    # "not found", whether the id is unknown, another patient's, or another tenant's.
    if conn.execute(_RECORD_EXISTS[table], {"id": record_id, "u": patient_id}).first() is None:
        raise PatientNotFound(f"{label} not found for this patient")


_ROOM = {
    # How many active items the profile holds besides the one being written (an update of an
    # active item adds nothing). Readings are history: what each evaluation reads is the latest of
    # each type, so the bound is on types.
    "medications": text(
        "SELECT count(*) FROM healthcare.medications WHERE health_profile_id = :p AND is_active AND id <> :id"
    ),
    "allergies": text(
        "SELECT count(*) FROM healthcare.allergies WHERE health_profile_id = :p AND is_active AND id <> :id"
    ),
    "conditions": text(
        "SELECT count(*) FROM healthcare.conditions WHERE health_profile_id = :p AND is_active AND id <> :id"
    ),
    "reading types": text(
        "SELECT count(DISTINCT reading_type) FILTER (WHERE reading_type <> :id),"
        " bool_or(reading_type = :id) FROM healthcare.biometric_readings WHERE health_profile_id = :p"
    ),
}
_LOCK_PROFILE = text("SELECT 1 FROM healthcare.health_profiles WHERE id = :p FOR NO KEY UPDATE")


def _require_room(conn: Connection, category: str, profile_id: str, item: str, limit: int | None) -> None:
    if limit is None:
        return
    # Concurrent writers of one patient queue here, so two of them cannot both take the last place.
    conn.execute(_LOCK_PROFILE, {"p": profile_id})
    others, *known = conn.execute(_ROOM[category], {"p": profile_id, "id": item}).one()
    if others >= limit and not any(known):
        raise TooManyItems(category, limit)


def _profile_of(conn: Connection, patient_id: str) -> tuple[str, str]:
    row = conn.execute(
        text("SELECT id, tenant_id FROM healthcare.health_profiles WHERE user_id = :u"), {"u": patient_id}
    ).one_or_none()
    if row is None:
        raise PatientNotFound("patient not found")
    return str(row[0]), str(row[1])


def create_profile(
    conn: Connection,
    keys: KeyStore,
    tenant_id: str,
    patient_id: str,
    profile: ProfileInput,
    profile_id: str | None = None,
) -> str:
    ring = keys.keyring(conn, tenant_id)
    pid = profile_id or new_id("hp")
    conn.execute(
        text(
            "INSERT INTO healthcare.health_profiles (id, tenant_id, user_id, subscription_tier, encrypted_sex,"
            " encrypted_pregnancy_status, encrypted_blood_type, encrypted_notes)"
            " VALUES (:id, :t, :u, CAST(:tier AS public.subscription_tier), :sex, :preg, :blood, :notes)"
        ),
        {
            "id": pid,
            "t": tenant_id,
            "u": patient_id,
            "tier": profile.subscription_tier,
            "sex": ring.encrypt_optional(_PRF, "encrypted_sex", pid, profile.sex),
            "preg": ring.encrypt_optional(_PRF, "encrypted_pregnancy_status", pid, profile.pregnancy_status),
            "blood": ring.encrypt_optional(_PRF, "encrypted_blood_type", pid, profile.blood_type),
            "notes": ring.encrypt_optional(_PRF, "encrypted_notes", pid, profile.notes),
        },
    )
    refresh_integrity(conn, keys, patient_id)
    return pid


_BY_EXTERNAL_ID = {
    table: text(
        f"SELECT id, encrypted_external_id FROM {table}"  # noqa: S608 - fixed table names
        " WHERE tenant_id = :t AND user_id = :u AND external_id_index = :x"
    )
    for table in (_MED, _ALG, _CND)
}


@dataclass(frozen=True, slots=True)
class _Kind:
    table: str
    label: str
    prefix: str  # of new ids


_MEDICATION = _Kind(_MED, "medication", "med")
_ALLERGY = _Kind(_ALG, "allergy", "alg")
_CONDITION = _Kind(_CND, "condition", "cond")


@dataclass(frozen=True, slots=True)
class _Target:
    record_id: str
    index: str | None  # the EHR identifier's index; None when the write names none
    existed: bool


def _target(
    conn: Connection,
    keys: KeyStore,
    kind: _Kind,
    tenant: str,
    patient_id: str,
    profile_id: str,
    record_id: str | None,
    external_id: str | None,
    *,
    must_exist: bool,
) -> _Target:
    """The row a write lands on: the patient's record the EHR identifier names, else the one our id
    names (which must exist when `must_exist`), else a new one."""
    table, label, prefix = kind.table, kind.label, kind.prefix
    if must_exist and record_id is not None:
        _require_record(conn, table, record_id, patient_id, label)
    if external_id is None:
        return _Target(record_id or new_id(prefix), None, must_exist and record_id is not None)
    # Writers of one patient queue here, so two creating the same identifier cannot both miss it.
    conn.execute(_LOCK_PROFILE, {"p": profile_id})
    ring = keys.keyring(conn, tenant)
    index = ring.record_index(table, patient_id, external_id)
    found = conn.execute(_BY_EXTERNAL_ID[table], {"t": tenant, "u": patient_id, "x": index}).one_or_none()
    if found is None:
        return _Target(record_id or new_id(prefix), index, must_exist and record_id is not None)
    stored_id, ciphertext = str(found[0]), str(found[1])
    if TenantKeyring.version_of(ciphertext) not in ring.keys:
        ring = keys.keyring(conn, tenant, refresh=True)
    # The index is a plain column: the row it finds must hold the identifier asked for (its
    # ciphertext is bound to the row), or someone moved an index between rows. Fail closed.
    if ring.decrypt(table, "encrypted_external_id", stored_id, ciphertext) != external_id:
        raise IntegrityError(f"{label} {stored_id}: its EHR identifier does not match its index")
    if record_id is not None and record_id != stored_id:
        raise ExternalIdTaken(label)
    return _Target(stored_id, index, True)


def _external(ring: TenantKeyring, table: str, target: _Target, external_id: str | None) -> dict[str, str | None]:
    return {
        "xe": ring.encrypt_optional(table, "encrypted_external_id", target.record_id, external_id),
        "xi": target.index,
    }


_UPSERT_MEDICATION = text("""
    INSERT INTO healthcare.medications (id, tenant_id, health_profile_id, user_id, encrypted_generic_name,
        encrypted_brand_name,
        encrypted_dosage, encrypted_frequency, encrypted_route, encrypted_indication, encrypted_prescribed_by,
        is_emergency_medication, encrypted_coding, encrypted_external_id, external_id_index)
    VALUES (:id, :t, :p, :u, :g, :b, :d, :f, :r, :i, :pb, :em, :cd, :xe, :xi)
    ON CONFLICT (id) DO UPDATE SET encrypted_generic_name = EXCLUDED.encrypted_generic_name,
        encrypted_brand_name = EXCLUDED.encrypted_brand_name, encrypted_dosage = EXCLUDED.encrypted_dosage,
        encrypted_frequency = EXCLUDED.encrypted_frequency, encrypted_route = EXCLUDED.encrypted_route,
        encrypted_indication = EXCLUDED.encrypted_indication,
        encrypted_prescribed_by = EXCLUDED.encrypted_prescribed_by,
        is_emergency_medication = EXCLUDED.is_emergency_medication,
        encrypted_coding = EXCLUDED.encrypted_coding,
        -- A write that names no EHR identifier keeps the one stored.
        encrypted_external_id = COALESCE(EXCLUDED.encrypted_external_id, healthcare.medications.encrypted_external_id),
        external_id_index = COALESCE(EXCLUDED.external_id_index, healthcare.medications.external_id_index),
        is_active = true, updated_at = now()
    WHERE healthcare.medications.user_id = EXCLUDED.user_id
""")


def _write_medication(
    conn: Connection,
    ring: TenantKeyring,
    tenant: str,
    profile_id: str,
    patient_id: str,
    target: _Target,
    med: MedicationInput,
) -> None:
    mid = target.record_id

    def enc(col: str, value: str | None) -> str | None:
        return ring.encrypt_optional(_MED, col, mid, value)

    params = {
        "id": mid,
        "t": tenant,
        "p": profile_id,
        "u": patient_id,
        "g": enc("encrypted_generic_name", med.generic_name),
        "b": enc("encrypted_brand_name", med.brand_name),
        "d": enc("encrypted_dosage", med.dosage),
        "f": enc("encrypted_frequency", med.frequency),
        "r": enc("encrypted_route", med.route),
        "i": enc("encrypted_indication", med.indication),
        "pb": enc("encrypted_prescribed_by", med.prescribed_by),
        "em": med.is_emergency_medication,
        "cd": enc("encrypted_coding", med.coding.stored() if med.coding is not None else None),
        **_external(ring, _MED, target, med.external_id),
    }
    if conn.execute(_UPSERT_MEDICATION, params).rowcount == 0:
        # The id names a record of another patient: nothing was written, and the caller must know.
        raise PatientNotFound("medication not found for this patient")


def put_medication(
    conn: Connection,
    keys: KeyStore,
    patient_id: str,
    med: MedicationInput,
    medication_id: str | None = None,
    *,
    must_exist: bool = False,
    max_active: int | None = None,
) -> str:
    """Creates or updates one medication; an EHR identifier the patient's records already hold names
    the record updated (an upsert), whether or not it is active."""
    profile_id, tenant = _profile_of(conn, patient_id)
    target = _target(
        conn, keys, _MEDICATION, tenant, patient_id, profile_id, medication_id, med.external_id, must_exist=must_exist
    )
    ring = keys.keyring(conn, tenant)
    _require_room(conn, "medications", profile_id, target.record_id, max_active)
    _write_medication(conn, ring, tenant, profile_id, patient_id, target, med)
    refresh_integrity(conn, keys, patient_id)
    return target.record_id


@dataclass(frozen=True, slots=True)
class ReplacedMedications:
    medication_ids: tuple[str, ...]  # in the order given
    created: int
    updated: int  # reactivated ones included
    unchanged: int
    deactivated_ids: tuple[str, ...]
    version: int


def _same_medication(row: Mapping[str, Any] | None, med: MedicationInput) -> bool:
    """Whether an active row already says what `med` says (then the replacement leaves it alone)."""
    if row is None:
        return False
    coding = json.loads(med.coding.stored()) if med.coding is not None else None
    return (
        row["generic_name"] == med.generic_name
        and row["brand_name"] == med.brand_name
        and row["dosage"] == med.dosage
        and row["frequency"] == med.frequency
        and row["route"] == med.route
        and row["indication"] == med.indication
        and row["prescribed_by"] == med.prescribed_by
        and bool(row["is_emergency_medication"]) == med.is_emergency_medication
        and row["coding"] == coding
        and (med.external_id is None or row["external_id"] == med.external_id)
    )


_DEACTIVATE_OTHERS = text(
    "UPDATE healthcare.medications SET is_active = false, ended_on = COALESCE(ended_on, current_date),"
    " updated_at = now()"
    " WHERE health_profile_id = :p AND is_active AND NOT (id = ANY (CAST(:keep AS text[]))) RETURNING id"
)


def replace_active_medications(
    conn: Connection,
    keys: KeyStore,
    patient_id: str,
    entries: Sequence[tuple[str | None, MedicationInput]],
) -> ReplacedMedications:
    """The patient's active medications become exactly `entries` ((our id or None, medication)), in
    the caller's transaction: each lands on the record its EHR identifier names, else on the one our
    id names (which must be this patient's), else on a new one; active records not named are
    deactivated. Rows that already say what their entry says are left as they are.

    The record is verified before it is changed: a replacement decides what to keep by comparing with
    what is stored, and resealing tampered rows would bless them.
    """
    profile_id, tenant = _profile_of(conn, patient_id)
    conn.execute(_LOCK_PROFILE, {"p": profile_id})
    record, stored, sections = _load(conn, keys, patient_id)
    if record.withheld:
        raise PermissionError("this principal may not rewrite the record's integrity seal")
    ring = keys.keyring(conn, tenant)
    if not _verify_sections(ring, stored, sections, frozenset()):
        raise IntegrityError(f"health profile {record.profile_id} failed its integrity check")
    active = {str(m["id"]): m for m in record.medications}
    seen: dict[str, int] = {}
    ids: list[str] = []
    created = updated = 0
    for i, (medication_id, med) in enumerate(entries):
        target = _target(
            conn,
            keys,
            _MEDICATION,
            tenant,
            patient_id,
            profile_id,
            medication_id,
            med.external_id,
            must_exist=medication_id is not None,
        )
        if target.record_id in seen:
            raise SameRecordTwice("medications", seen[target.record_id], i)
        seen[target.record_id] = i
        ids.append(target.record_id)
        if _same_medication(active.get(target.record_id), med):
            continue
        _write_medication(conn, ring, tenant, profile_id, patient_id, target, med)
        created, updated = (created, updated + 1) if target.existed else (created + 1, updated)
    deactivated = tuple(sorted(str(r[0]) for r in conn.execute(_DEACTIVATE_OTHERS, {"p": profile_id, "keep": ids})))
    version = refresh_integrity(conn, keys, patient_id) if created or updated or deactivated else record.version
    return ReplacedMedications(
        medication_ids=tuple(ids),
        created=created,
        updated=updated,
        unchanged=len(ids) - created - updated,
        deactivated_ids=deactivated,
        version=version,
    )


def deactivate_medication(conn: Connection, keys: KeyStore, patient_id: str, medication_id: str) -> None:
    done = conn.execute(
        text(
            "UPDATE healthcare.medications SET is_active = false, ended_on = COALESCE(ended_on, current_date),"
            " updated_at = now()"
            " WHERE id = :id AND user_id = :u AND is_active RETURNING id"
        ),
        {"id": medication_id, "u": patient_id},
    ).one_or_none()
    if done is None:
        raise PatientNotFound("active medication not found")
    refresh_integrity(conn, keys, patient_id)


def put_allergy(
    conn: Connection,
    keys: KeyStore,
    patient_id: str,
    allergy: AllergyInput,
    allergy_id: str | None = None,
    *,
    must_exist: bool = False,
    max_active: int | None = None,
) -> str:
    profile_id, tenant = _profile_of(conn, patient_id)
    target = _target(
        conn, keys, _ALLERGY, tenant, patient_id, profile_id, allergy_id, allergy.external_id, must_exist=must_exist
    )
    ring = keys.keyring(conn, tenant)
    aid = target.record_id
    _require_room(conn, "allergies", profile_id, aid, max_active)
    written = conn.execute(
        text("""
        INSERT INTO healthcare.allergies (id, tenant_id, health_profile_id, user_id, encrypted_allergen,
            allergen_category,
            severity, encrypted_reactions, encrypted_emergency_medication, encrypted_coding,
            encrypted_external_id, external_id_index)
        VALUES (:id, :t, :p, :u, :a, CAST(:c AS public.allergen_category), CAST(:s AS public.allergy_severity),
            :r, :em, :cd, :xe, :xi)
        ON CONFLICT (id) DO UPDATE SET encrypted_allergen = EXCLUDED.encrypted_allergen,
            allergen_category = EXCLUDED.allergen_category, severity = EXCLUDED.severity,
            encrypted_reactions = EXCLUDED.encrypted_reactions,
            encrypted_emergency_medication = EXCLUDED.encrypted_emergency_medication,
            encrypted_coding = EXCLUDED.encrypted_coding,
            encrypted_external_id = COALESCE(EXCLUDED.encrypted_external_id,
                healthcare.allergies.encrypted_external_id),
            external_id_index = COALESCE(EXCLUDED.external_id_index, healthcare.allergies.external_id_index),
            is_active = true, updated_at = now()
        WHERE healthcare.allergies.user_id = EXCLUDED.user_id
    """),
        {
            "id": aid,
            "t": tenant,
            "p": profile_id,
            "u": patient_id,
            "a": ring.encrypt(_ALG, "encrypted_allergen", aid, allergy.allergen),
            "c": allergy.allergen_category,
            "s": allergy.severity,
            "r": ring.encrypt(_ALG, "encrypted_reactions", aid, json.dumps(list(allergy.reactions))),
            "em": ring.encrypt_optional(_ALG, "encrypted_emergency_medication", aid, allergy.emergency_medication),
            "cd": ring.encrypt_optional(
                _ALG, "encrypted_coding", aid, allergy.coding.stored() if allergy.coding is not None else None
            ),
            **_external(ring, _ALG, target, allergy.external_id),
        },
    )
    if written.rowcount == 0:
        # The id names a record of another patient: nothing was written, and the caller must know.
        raise PatientNotFound("allergy not found for this patient")
    refresh_integrity(conn, keys, patient_id)
    return aid


def put_condition(
    conn: Connection,
    keys: KeyStore,
    patient_id: str,
    condition: ConditionInput,
    condition_id: str | None = None,
    *,
    must_exist: bool = False,
    max_active: int | None = None,
) -> str:
    profile_id, tenant = _profile_of(conn, patient_id)
    target = _target(
        conn, keys, _CONDITION, tenant, patient_id, profile_id, condition_id, condition.external_id,
        must_exist=must_exist,
    )
    ring = keys.keyring(conn, tenant)
    cid = target.record_id
    _require_room(conn, "conditions", profile_id, cid, max_active)
    written = conn.execute(
        text("""
        INSERT INTO healthcare.conditions (id, tenant_id, health_profile_id, user_id, encrypted_name, encrypted_code,
            encrypted_notes, is_critical, encrypted_external_id, external_id_index)
        VALUES (:id, :t, :p, :u, :n, :c, :no, :crit, :xe, :xi)
        ON CONFLICT (id) DO UPDATE SET encrypted_name = EXCLUDED.encrypted_name,
            encrypted_code = EXCLUDED.encrypted_code, encrypted_notes = EXCLUDED.encrypted_notes,
            is_critical = EXCLUDED.is_critical,
            encrypted_external_id = COALESCE(EXCLUDED.encrypted_external_id,
                healthcare.conditions.encrypted_external_id),
            external_id_index = COALESCE(EXCLUDED.external_id_index, healthcare.conditions.external_id_index),
            is_active = true, updated_at = now()
        WHERE healthcare.conditions.user_id = EXCLUDED.user_id
    """),
        {
            "id": cid,
            "t": tenant,
            "p": profile_id,
            "u": patient_id,
            "n": ring.encrypt(_CND, "encrypted_name", cid, condition.name),
            "c": ring.encrypt_optional(_CND, "encrypted_code", cid, condition.code),
            "no": ring.encrypt_optional(_CND, "encrypted_notes", cid, condition.notes),
            "crit": condition.is_critical,
            **_external(ring, _CND, target, condition.external_id),
        },
    )
    if written.rowcount == 0:
        # The id names a record of another patient: nothing was written, and the caller must know.
        raise PatientNotFound("condition not found for this patient")
    refresh_integrity(conn, keys, patient_id)
    return cid


def put_biometric(
    conn: Connection,
    keys: KeyStore,
    patient_id: str,
    reading: BiometricInput,
    reading_id: str | None = None,
    *,
    max_active: int | None = None,
) -> str:
    profile_id, tenant = _profile_of(conn, patient_id)
    _require_room(conn, "reading types", profile_id, reading.reading_type, max_active)
    ring = keys.keyring(conn, tenant)
    bid = reading_id or new_id("bio")
    conn.execute(
        text("""
        INSERT INTO healthcare.biometric_readings (id, tenant_id, health_profile_id, user_id, reading_type,
            encrypted_value,
            encrypted_unit, trend_direction, taken_at)
        VALUES (:id, :t, :p, :u, :rt, :v, :un, :tr, COALESCE(:at, now()))
    """),
        {
            "id": bid,
            "t": tenant,
            "p": profile_id,
            "u": patient_id,
            "rt": reading.reading_type,
            "v": ring.encrypt(_BIO, "encrypted_value", bid, repr(float(reading.value))),
            "un": ring.encrypt_optional(_BIO, "encrypted_unit", bid, reading.unit),
            "tr": reading.trend_direction,
            "at": reading.taken_at,
        },
    )
    # The latest reading of each type is sealed with the rest of the record: a new one reseals it.
    refresh_integrity(conn, keys, patient_id)
    return bid


def profile_version(conn: Connection, patient_id: str) -> int:
    version = conn.execute(
        text("SELECT version FROM healthcare.health_profiles WHERE user_id = :u"), {"u": patient_id}
    ).scalar_one_or_none()
    if version is None:
        raise PatientNotFound("patient not found")
    return int(version)


def read_snapshot_rows(conn: Connection, patient_id: str) -> int:
    """The snapshot statement alone, without decryption or checks: the benchmark floor's read.

    Returns how many rows of clinical content it brought back.
    """
    row = conn.execute(_SNAPSHOT, {"patient": patient_id, "caller_role": None}).mappings().one()
    if row["id"] is None:
        raise PatientNotFound("patient not found")
    return 1 + sum(len(row[k]) for k in ("medications", "allergies", "conditions", "biometrics"))


# The statement read_patient runs, for the benchmark's lean floor: the same read on plain psycopg.
SNAPSHOT_STATEMENT = _SNAPSHOT


@dataclass(frozen=True, slots=True)
class PregnancyInput:
    status: str | None  # "pregnant" | "not_pregnant" | None: not known (clears the recorded status)
    recorded_at: datetime  # when it was observed (aware)
    gestational_days: int | None = None  # on the day it was recorded
    estimated_delivery: date | None = None


@dataclass(frozen=True, slots=True)
class LactationInput:
    lactating: bool | None  # None: not known (clears the recorded status)
    recorded_at: datetime


@dataclass(frozen=True, slots=True)
class DemographicsInput:
    """What a PutDemographics writes; a part left None keeps what is stored, a part given replaces
    that part whole (a pregnancy without gestational data clears the stored gestational data)."""

    birth_date: date | None = None
    sex: str | None = None
    pregnancy: PregnancyInput | None = None
    lactation: LactationInput | None = None


_PUT_DEMOGRAPHICS = text("""
    UPDATE healthcare.health_profiles SET
        encrypted_birth_date = CASE WHEN :set_birth THEN :birth ELSE encrypted_birth_date END,
        encrypted_sex = CASE WHEN :set_sex THEN :sex ELSE encrypted_sex END,
        encrypted_pregnancy_status = CASE WHEN :set_preg THEN :preg ELSE encrypted_pregnancy_status END,
        encrypted_pregnancy_recorded_at = CASE WHEN :set_preg THEN :preg_at ELSE encrypted_pregnancy_recorded_at END,
        encrypted_gestational_age = CASE WHEN :set_preg THEN :ga ELSE encrypted_gestational_age END,
        encrypted_estimated_delivery_date = CASE WHEN :set_preg THEN :edd ELSE encrypted_estimated_delivery_date END,
        encrypted_lactation_status = CASE WHEN :set_lact THEN :lact ELSE encrypted_lactation_status END,
        encrypted_lactation_recorded_at = CASE WHEN :set_lact THEN :lact_at ELSE encrypted_lactation_recorded_at END
    WHERE id = :id
""")


def put_demographics(
    conn: Connection,
    keys: KeyStore,
    patient_id: str,
    demo: DemographicsInput,
    *,
    check: Any = None,
) -> int:
    """Writes the given parts of the patient's demographics in the caller's transaction and reseals
    the profile; returns the profile's version. The record is locked and verified first; `check`
    (a callable taking the verified PatientRecord and the input) may refuse the write, before
    anything is written, by raising."""
    profile_id, tenant = _profile_of(conn, patient_id)
    conn.execute(_LOCK_PROFILE, {"p": profile_id})
    record, stored, sections = _load(conn, keys, patient_id)
    if record.withheld:
        raise PermissionError("this principal may not rewrite the record's integrity seal")
    ring = keys.keyring(conn, tenant)
    if not _verify_sections(ring, stored, sections, frozenset()):
        raise IntegrityError(f"health profile {record.profile_id} failed its integrity check")
    if check is not None:
        check(record, demo)

    def enc(column: str, value: str | None) -> str | None:
        return ring.encrypt_optional(_PRF, column, profile_id, value)

    preg, lact = demo.pregnancy, demo.lactation
    gestation = None
    if preg is not None and preg.gestational_days is not None:
        gestation = f"{preg.gestational_days // 7}+{preg.gestational_days % 7}"
    lact_status = None
    if lact is not None and lact.lactating is not None:
        lact_status = "lactating" if lact.lactating else "not_lactating"
    conn.execute(
        _PUT_DEMOGRAPHICS,
        {
            "id": profile_id,
            "set_birth": demo.birth_date is not None,
            "birth": enc("encrypted_birth_date", demo.birth_date.isoformat() if demo.birth_date else None),
            "set_sex": demo.sex is not None,
            "sex": enc("encrypted_sex", demo.sex),
            "set_preg": preg is not None,
            "preg": enc("encrypted_pregnancy_status", preg.status if preg else None),
            "preg_at": enc(
                "encrypted_pregnancy_recorded_at",
                preg.recorded_at.astimezone(UTC).isoformat() if preg and preg.status else None,
            ),
            "ga": enc("encrypted_gestational_age", gestation),
            "edd": enc(
                "encrypted_estimated_delivery_date",
                preg.estimated_delivery.isoformat() if preg and preg.estimated_delivery else None,
            ),
            "set_lact": lact is not None,
            "lact": enc("encrypted_lactation_status", lact_status),
            "lact_at": enc(
                "encrypted_lactation_recorded_at",
                lact.recorded_at.astimezone(UTC).isoformat() if lact and lact_status else None,
            ),
        },
    )
    return refresh_integrity(conn, keys, patient_id)
