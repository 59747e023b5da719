"""Conditions by SNOMED CT and ICD-10-CM (rules/knowledge/conditions.yaml -> condition_codes.tsv): a
SNOMED-coded condition and its ICD-10-CM equivalent mean the same condition and fire the same rules,
from a rule case, the CLI's case lines, FHIR and the records door's validation."""

from __future__ import annotations

import re
from collections import defaultdict
from datetime import date
from pathlib import Path

import pytest
import yaml

from engine.adhoc import CaseError, case_from_json, flags_case
from engine.app.failures import Failure
from engine.app.records import ConditionEntry, check_condition_code
from engine.evaluate import evaluate
from engine.fhir import parse_patient_data
from engine.identity import Coding
from engine.knowledge import (
    KnowledgeFileError,
    load_knowledge_files,
    merge_condition_document,
    parse_condition_codes,
)
from engine.model import ConditionFact, EvaluationRequest, MedicationFact, PatientSnapshot
from engine.rules import RuleSet, load_rule_files

ROOT = Path(__file__).resolve().parent.parent
KNOWLEDGE_DIR = ROOT / "rules" / "knowledge"
SHIPPED = load_knowledge_files(KNOWLEDGE_DIR)
TABLE = (KNOWLEDGE_DIR / "condition_codes.tsv").read_text(encoding="utf-8")
RULES = RuleSet.build(
    [loaded.rule for loaded in load_rule_files([ROOT / "rules"]) if loaded.rule is not None], "shipped"
)
VOCAB = SHIPPED.vocabulary


def _rows() -> list[list[str]]:
    return [line.split("\t") for line in TABLE.splitlines()[1:] if line]


def _codes(condition: str, system: str) -> list[str]:
    return [r[2] for r in _rows() if r[0] == condition and r[1] == system]


def _alerts(meds: list[str], *conditions: ConditionFact, **patient: object) -> set[str]:
    snapshot = PatientSnapshot(
        "p",
        "t",
        medications=tuple(MedicationFact(f"m{i}", m) for i, m in enumerate(meds)),
        conditions=conditions,
        **patient,  # type: ignore[arg-type]
    )
    result = evaluate(snapshot, EvaluationRequest(), RULES, SHIPPED)
    return {a.rule_id for a in result.alerts if a.rule_id}


# -- the table ---------------------------------------------------------------------------------------


def test_every_row_names_its_source_and_every_code_has_its_systems_shape() -> None:
    rows = _rows()
    assert len(rows) > 1000
    for row in rows:
        assert len(row) == 5 and all(row), row
        assert row[1] in ("icd10", "snomed")
        assert re.match(r"^(vsac:[0-9.]+ |cdc-icd10cm:|synthea:)", row[4]), row
    parse_condition_codes(TABLE)  # the loader's own checks (shape of every code)


def test_the_table_is_what_conditions_yaml_asks_for() -> None:
    spec = yaml.safe_load((KNOWLEDGE_DIR / "conditions.yaml").read_text(encoding="utf-8"))
    built = {r[0] for r in _rows()}
    assert built == set(spec["conditions"])


@pytest.mark.parametrize(
    "condition",
    ["heart_failure", "asthma", "copd", "myasthenia_gravis", "long_qt_syndrome", "epilepsy", "angle_closure_glaucoma",
     "urinary_retention", "dementia", "parkinsons_disease", "peptic_ulcer_disease", "pregnancy", "lactation"],
)
def test_both_systems_lead_to_the_same_condition(condition: str) -> None:
    """Mapped both ways: every SNOMED CT and every ICD-10-CM code of a group resolves to the group."""
    snomed, icd10 = _codes(condition, "snomed"), _codes(condition, "icd10")
    assert snomed and icd10
    for code in snomed:
        assert condition in VOCAB.condition_ids_of_code(Coding("snomed", code)), code
    for code in icd10:
        assert condition in VOCAB.condition_ids_of_code(Coding("icd10", code)), code


def test_a_code_in_two_groups_means_both() -> None:
    # I11.0 (hypertensive heart disease with heart failure) is in the Heart Failure value set and under
    # the vocabulary's I11 hypertension category.
    assert "I11.0" in _codes("heart_failure", "icd10")
    assert set(VOCAB.normalize_condition("", "I11.0").ids) >= {"heart_failure", "hypertension"}
    # The most specific level first: N18.6 is end-stage renal disease, and chronic kidney disease.
    assert VOCAB.normalize_condition("", "N18.6").ids[:2] == ("end_stage_renal_disease", "chronic_kidney_disease")


def test_bare_prefixed_and_uri_codes_read_alike() -> None:
    for code in ("195967001", "snomed:195967001", "http://snomed.info/sct|195967001", "J45.909", "icd10:J45.909",
                 "http://hl7.org/fhir/sid/icd-10-cm|J45.909"):
        assert VOCAB.normalize_condition("", code).ids == ("asthma",), code
    # A code no group lists falls back to the name; neither known: unrecognised, never a guess.
    assert VOCAB.normalize_condition("Asthma", "snomed:999999999").id == "asthma"
    assert not VOCAB.normalize_condition("Something rare", "snomed:999999999").recognised


# -- rules fire the same on either code ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("meds", "condition", "rule"),
    [
        (["Actos 30 mg"], "heart_failure", "condition-thiazolidinedione-heart-failure"),
        (["propranolol 40 mg"], "asthma", "condition-nonselective-beta-blocker-asthma"),
        (["ciprofloxacin 500 mg"], "myasthenia_gravis", "condition-fluoroquinolone-myasthenia-gravis"),
        (["bupropion 150 mg"], "epilepsy", "condition-bupropion-seizure-disorder"),
        (["oxybutynin 5 mg"], "angle_closure_glaucoma", "condition-anticholinergic-angle-closure-glaucoma"),
        (["haloperidol 2 mg"], "parkinsons_disease", "condition-dopamine-antagonist-parkinsons-disease"),
        (["haloperidol 2 mg"], "long_qt_syndrome", "condition-qt-drug-long-qt"),
    ],
)
def test_every_code_of_the_group_fires_the_rule(meds: list[str], condition: str, rule: str) -> None:
    for system in ("snomed", "icd10"):
        codes = _codes(condition, system)
        for code in codes[:: max(1, len(codes) // 6)]:  # a spread of the group, both systems
            fact = ConditionFact("c1", "", code=code, codings=(Coding(system, code),))
            assert rule in _alerts(meds, fact), (system, code)
    assert rule not in _alerts(meds, ConditionFact("c1", "Osteoarthritis", code="icd10:M17.9"))


def test_snomed_only_fhir_condition_fires() -> None:
    """A FHIR Condition with only a SNOMED CT coding (and a display the names do not list) is screened."""
    resource = {
        "resourceType": "Condition",
        "id": "c1",
        "subject": {"reference": "Patient/p1"},
        "clinicalStatus": {
            "coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]
        },
        "code": {"coding": [{"system": "http://snomed.info/sct", "code": "31839002", "display": "MG, adult form"}]},
    }
    data = parse_patient_data([{"resourceType": "Patient", "id": "p1"}, resource])
    snapshot = data.snapshot("p1", "t", on=date(2026, 12, 1))
    assert snapshot.conditions[0].codings == (Coding("snomed", "31839002"),)
    assert VOCAB.normalize_condition("MG, adult form").recognised is False  # the name alone would miss it
    alerts = _alerts(["levofloxacin 750 mg"], *snapshot.conditions)
    assert "condition-fluoroquinolone-myasthenia-gravis" in alerts


def test_a_coded_pregnancy_counts_as_pregnant() -> None:
    pregnancy = ConditionFact("c1", "", code="icd10:O09.90", codings=(Coding("icd10", "O09.90"),))
    assert "pregnancy-warfarin" in _alerts(["Coumadin 5 mg"], pregnancy, sex="female", age=30)
    # ... even where a status says otherwise: the disagreement is read the safe way.
    assert "pregnancy-warfarin" in _alerts(["Coumadin 5 mg"], pregnancy, sex="female", age=30, pregnant=False)
    lactation = ConditionFact("c2", "", code="snomed:866041003")
    assert "pregnancy-warfarin" not in _alerts(["Coumadin 5 mg"], lactation, sex="female", age=30, pregnant=False)


# -- the doors' readers ---------------------------------------------------------------------------------


def test_case_lines_and_cli_flags_carry_the_system() -> None:
    _, snapshot, _ = case_from_json(
        {"id": "x", "medications": [{"name": "Actos 30 mg"}], "conditions": [{"name": "", "code": "snomed:42343007"}]}
    )
    assert snapshot.conditions[0].codings == (Coding("snomed", "42343007"),)
    assert "condition-thiazolidinedione-heart-failure" in _alerts(["Actos 30 mg"], *snapshot.conditions)
    case = flags_case(
        meds=[], proposed=[], allergies=[], conditions=["snomed:195967001", "icd10:J45.909"], labs={}, foods=[],
        age=None, sex=None, pregnant=None, tier="PREMIUM",
    )
    _, snapshot, _ = case_from_json(case)
    assert [c.codings for c in snapshot.conditions] == [(Coding("snomed", "195967001"),), (Coding("icd10", "J45.909"),)]
    with pytest.raises(CaseError, match=r"conditions\[0\]\.code"):
        case_from_json({"id": "x", "conditions": [{"name": "", "code": "rxnorm:11289"}]})


@pytest.mark.parametrize(
    "code", ["I10", "icd10:J45.909", "snomed:195967001", "195967001", "http://snomed.info/sct|195967001",
             "http://hl7.org/fhir/sid/icd-10-cm|J45.909"],
)
def test_records_accept_condition_codes_with_or_without_their_system(code: str) -> None:
    assert check_condition_code("condition.code", code) == code
    _, stored = ConditionEntry(name="asthma", code=code).checked()
    assert stored.code == code


@pytest.mark.parametrize("code", ["rxnorm:11289", "snomed:12", "icd10:banana", "not a code", "12345"])
def test_records_refuse_other_systems_and_malformed_codes(code: str) -> None:
    with pytest.raises(Failure) as caught:
        ConditionEntry(name="asthma", code=code).checked()
    assert "condition.code" in str(caught.value)


def test_a_code_row_for_an_undefined_condition_is_refused() -> None:
    codes = parse_condition_codes("condition\tsystem\tcode\tdisplay\tsource\nnowhere\tsnomed\t195967001\tx\ty\n")
    with pytest.raises(KnowledgeFileError, match="nowhere"):
        merge_condition_document({"conditions": {}}, {"conditions": {}}, codes)
    with pytest.raises(KnowledgeFileError, match="not a valid snomed"):
        parse_condition_codes("condition\tsystem\tcode\tdisplay\tsource\nasthma\tsnomed\tJ45\tx\ty\n")


def test_every_rule_case_code_comes_from_the_table_or_the_icd10cm_categories() -> None:
    """No code in a rule case is typed from memory: each is a row of condition_codes.tsv or, for the
    conditions that should not fire, under an ICD-10-CM category the vocabulary or table lists
    (checked against the CDC tabular list when the table was built: SOURCES.md)."""
    known = defaultdict(set)
    for row in _rows():
        known[row[1]].add(row[2])
    for path in sorted((ROOT / "rules").rglob("*.yaml")):
        for match in re.finditer(r"code: '?(snomed|icd10):([0-9A-Z.]+)", path.read_text(encoding="utf-8")):
            system, code = match.groups()
            if system == "snomed":
                assert code in known["snomed"], (path.name, code)


@pytest.mark.parametrize(("present", "missing"), [("conditions.yaml", "condition_codes.tsv"),
                                                  ("allergy_classes.tsv", "allergy.yaml")])  # fmt: skip
def test_a_spec_without_its_table_or_the_reverse_is_refused(tmp_path: Path, present: str, missing: str) -> None:
    # The shipped folder less one file of a pair: refused, naming the missing file, never half-loaded.
    import shutil

    folder = tmp_path / "knowledge"
    shutil.copytree(KNOWLEDGE_DIR, folder)
    (folder / missing).unlink()
    with pytest.raises(KnowledgeFileError, match=rf"{missing}: not found \(.* go together\)"):
        load_knowledge_files(folder)
