"""The benchmark's patients: a mix like a clinic's, not one patient evaluated over and over.

`patients` patients (at least 1,000) with 5, 15 or 40 active medications (half, a third and the rest
of a sixth), drawn from the real ingredients the knowledge base has pairs for, the commonly
prescribed ones more often; one to three allergies, one to four conditions, six lab values each.
Which patient a call asks about follows a Zipf law (a few patients are evaluated often, most
rarely), and while calls run a writer changes records at a fixed share of calls (a dose changed), so
the caches show the hit rate a service would see rather than 100 %.

Seeded with the store's own write functions as the service writes records, except that a record is
sealed (its integrity MACs recomputed) once after all its items rather than after each one.
"""

from __future__ import annotations

import itertools
import random
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from typing import Any

__all__ = ["COMMON_DRUGS", "PatientMix", "RecordChanger", "seed_mix"]

COMMON_DRUGS = (
    "warfarin", "ibuprofen", "simvastatin", "sertraline", "metformin", "lisinopril", "amlodipine",
    "omeprazole", "atorvastatin", "clopidogrel", "furosemide", "spironolactone", "levothyroxine",
    "gabapentin", "tramadol", "prednisone", "digoxin", "amiodarone", "citalopram", "allopurinol",
    "metoprolol", "losartan", "hydrochlorothiazide", "aspirin", "pantoprazole", "insulin glargine",
    "tamsulosin", "montelukast", "escitalopram", "rosuvastatin", "carvedilol", "apixaban", "trazodone",
    "duloxetine", "fluoxetine", "bupropion", "pravastatin", "meloxicam", "clonazepam", "alprazolam",
)  # fmt: skip
ALLERGENS = (("penicillin", "DRUG"), ("peanut", "FOOD"), ("sulfamethoxazole", "DRUG"), ("codeine", "DRUG"))
CONDITIONS = ("hypertension", "chronic kidney disease", "atrial fibrillation", "type 2 diabetes mellitus")
LABS = (("egfr", 25.0, 95.0), ("potassium", 3.4, 5.6), ("inr", 0.9, 3.5), ("qtc", 400.0, 500.0),
        ("platelets", 90.0, 400.0), ("systolic_bp", 100.0, 170.0))  # fmt: skip
SIZES = ((5, 0.50), (15, 0.35), (40, 0.15))


@dataclass
class PatientMix:
    tenant: str
    by_size: dict[int, list[str]]  # medications → patient ids
    meds: dict[str, list[tuple[str, Any]]]  # patient id → [(medication id, MedicationInput)]
    zipf_s: float = 1.0
    seed: int = 14

    @property
    def patients(self) -> list[str]:
        return [p for ids in self.by_size.values() for p in ids]

    def sequence(self, size: int | None = None, length: int = 20_000, offset: int = 0) -> list[str]:
        """Which patient each call asks about: a Zipf law over the patients (of one size, or all),
        their popularity ranks shuffled so that a patient's rank does not follow its size."""
        pool = list(self.by_size[size]) if size is not None else self.patients
        rng = random.Random(self.seed + offset + (size or 0))
        rng.shuffle(pool)
        weights = [1.0 / (rank + 1) ** self.zipf_s for rank in range(len(pool))]
        return rng.choices(pool, weights=weights, k=length)

    def cycle(self, size: int | None = None, offset: int = 0) -> Iterator[str]:
        return itertools.cycle(self.sequence(size, offset=offset))

    def plan(self) -> dict[str, Any]:
        """What the writer needs again in a later run on a copy of the same database (JSON)."""
        return {
            "tenant": self.tenant,
            "by_size": {str(n): ids for n, ids in self.by_size.items()},
            "meds": {p: [[mid, m.generic_name, m.frequency] for mid, m in ms] for p, ms in self.meds.items()},
        }

    @classmethod
    def from_plan(cls, plan: dict[str, Any]) -> PatientMix:
        from store.patients import MedicationInput

        return cls(
            plan["tenant"],
            {int(n): list(ids) for n, ids in plan["by_size"].items()},
            {
                p: [(mid, MedicationInput(name, frequency=freq)) for mid, name, freq in ms]
                for p, ms in plan["meds"].items()
            },
        )


@contextmanager
def _one_seal_per_record() -> Iterator[Callable[..., int]]:
    # The store's put_* functions reseal the record after every item: right for the service (each
    # call one item), quadratic for seeding 40 medications. Within this block they leave the seal to
    # the caller, which seals once per record with the real function it is handed.
    from store import patients

    real = patients.refresh_integrity
    patients.refresh_integrity = lambda conn, keys, patient_id: 0
    try:
        yield real
    finally:
        patients.refresh_integrity = real


def seed_mix(
    admin: Any,
    app: Any,
    provider: Any,
    keys: Any,
    *,
    tenant: str,
    advisors: tuple[str, ...],
    patients: int,
    drug_pool: list[str],
    log: Callable[[str], None],
) -> PatientMix:
    from store.admin import UserInput, create_tenant, create_user
    from store.patients import (
        AllergyInput,
        BiometricInput,
        ConditionInput,
        MedicationInput,
        ProfileInput,
        create_profile,
        put_allergy,
        put_biometric,
        put_condition,
        put_medication,
    )
    from store.session import Principal

    rng = random.Random(14)
    common = [d for d in COMMON_DRUGS if d in drug_pool]
    rest = [d for d in drug_pool if d not in common]
    names = common + rest
    weights = [8.0] * len(common) + [1.0] * len(rest)
    by_size: dict[int, list[str]] = {n: [] for n, _ in SIZES}
    plan: list[tuple[str, int]] = []
    for n, share in SIZES:
        for i in range(round(patients * share)):
            pid = f"bench-p{n:02d}-{i:04d}"
            by_size[n].append(pid)
            plan.append((pid, n))
    started = time.perf_counter()
    with admin.begin() as conn:
        create_tenant(conn, provider, tenant, "Benchmark Clinic")
        for advisor in advisors:
            create_user(conn, keys, tenant, advisor,
                        UserInput(first_name="Bench", healthcare_role="CLINICAL_ADVISOR", mfa_enabled=True))
        for pid, _ in plan:
            dob = date(rng.randint(1930, 2004), rng.randint(1, 12), rng.randint(1, 28))
            create_user(conn, keys, tenant, pid, UserInput(first_name="P", date_of_birth=dob))
    who = Principal(tenant, advisors[0], "CLINICAL_ADVISOR", mfa=True)
    meds: dict[str, list[tuple[str, Any]]] = {}
    with _one_seal_per_record() as seal:
        for start in range(0, len(plan), 50):
            batch = plan[start : start + 50]
            with app.scoped(who) as conn:
                for pid, n in batch:
                    sex = rng.choice(("female", "male"))
                    create_profile(conn, keys, tenant, pid, ProfileInput(
                        sex=sex, pregnancy_status="not_pregnant" if sex == "female" else None))
                    chosen: list[str] = []
                    while len(chosen) < n:
                        d = rng.choices(names, weights=weights)[0]
                        if d not in chosen:
                            chosen.append(d)
                    meds[pid] = []
                    for d in chosen:
                        med = MedicationInput(d, dosage=f"{rng.choice((5, 10, 20, 25, 50, 100))} mg",
                                              frequency=rng.choice(("daily", "twice daily", "at night")))
                        meds[pid].append((put_medication(conn, keys, pid, med), med))
                    for allergen, category in rng.sample(ALLERGENS, rng.randint(1, 3)):
                        put_allergy(conn, keys, pid, AllergyInput(allergen, category, "SEVERE", ("hives",)))
                    for cond in rng.sample(CONDITIONS, rng.randint(1, 4)):
                        put_condition(conn, keys, pid, ConditionInput(cond))
                    for lab, low, high in LABS:
                        put_biometric(conn, keys, pid, BiometricInput(lab, round(rng.uniform(low, high), 1)))
                    seal(conn, keys, pid)
    log(
        f"{len(plan)} patients seeded ({', '.join(f'{len(v)} with {k}' for k, v in by_size.items())} medications)"
        f" in {time.perf_counter() - started:.0f} s"
    )
    return PatientMix(tenant, by_size, meds)


@dataclass
class RecordChanger:
    """Changes one medication's dose of a patient (drawn by the same popularity as the calls) each
    time the calls completed pass another 1/share of a change: the records change between calls as
    they do in a clinic, and the service must notice (a changed record is read and verified afresh).

    Runs in this process with its own database connection (application_name praneya-bench-writer,
    so its backend is not counted as the server's); its own CPU is measured and left out of the
    client's."""

    mix: PatientMix
    db: Any
    principal: Any
    keys: Any
    calls: Callable[[], int]
    share: float = 0.05
    changes: int = 0
    cpu_seconds: float = 0.0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="record-changer", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

    def _run(self) -> None:
        from store.patients import put_medication

        rng = random.Random(7)
        who = self.mix.cycle(offset=1)
        base = self.calls()
        while not self._stop.wait(0.005):
            while self.changes < (self.calls() - base) * self.share and not self._stop.is_set():
                # Counted change by change, so that a phase's reading leaves out at most one change.
                t0 = time.thread_time()
                pid = next(who)
                mid, med = rng.choice(self.mix.meds[pid])
                changed = type(med)(med.generic_name, dosage=f"{rng.randint(1, 400)} mg", frequency=med.frequency)
                with self.db.scoped(self.principal) as conn:
                    put_medication(conn, self.keys, pid, changed, mid)
                self.changes += 1
                self.cpu_seconds += time.thread_time() - t0
