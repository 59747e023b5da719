"""Interactions by mechanism (rules/knowledge/mechanisms.yaml, expanded to mechanism_pairs.csv) through
the whole engine with the shipped rules: the issue's examples, one alert per finding, authored text
winning, tenant re-grading, intended combinations left alone, and the build itself."""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path

import pytest

from engine.evaluate import evaluate
from engine.knowledge import InteractionKnowledge, Knowledge, PairOverride, load_knowledge_files
from engine.model import (
    Alert,
    AlertKind,
    EvaluationRequest,
    EvaluationResult,
    MedicationFact,
    PatientSnapshot,
    Severity,
)
from engine.rules import RuleSet
from rules.knowledge import build_mechanisms
from store.config import PROJECT_ROOT
from tests.test_mechanism_coverage import shipped

KNOWLEDGE_DIR = PROJECT_ROOT / "rules" / "knowledge"


def _run(
    current: tuple[str, ...],
    proposed: tuple[str, ...] = (),
    *,
    age: int | None = None,
    knowledge: Knowledge | None = None,
    rules: RuleSet | None = None,
) -> EvaluationResult:
    default_knowledge, default_rules = shipped()
    snapshot = PatientSnapshot(
        "p", "t", age=age, medications=tuple(MedicationFact(f"m{i}", n) for i, n in enumerate(current))
    )
    request = EvaluationRequest(
        proposed_medications=tuple(MedicationFact(f"p{i}", n, proposed=True) for i, n in enumerate(proposed))
    )
    return evaluate(snapshot, request, rules or default_rules, knowledge or default_knowledge)


def _ddi(result: EvaluationResult) -> list[Alert]:
    return [a for a in result.alerts if a.kind is AlertKind.DRUG_DRUG_INTERACTION]


def _only_ddi(current: str, proposed: str) -> Alert:
    (alert,) = _ddi(_run((current,), (proposed,)))
    return alert


# --- the examples: ONC member pairs that had no alert ------------------------------------


@pytest.mark.parametrize(
    ("current", "proposed"),
    [
        ("irinotecan", "ritonavir"),
        ("irinotecan", "diltiazem"),
        ("Mevacor 20 mg", "erythromycin 250 mg"),
        ("lovastatin 40 mg", "amiodarone 200 mg"),
        ("lovastatin 40 mg", "verapamil 120 mg"),
        ("lovastatin 40 mg", "diltiazem 120 mg"),
        ("lovastatin 40 mg", "fluconazole 150 mg"),
        ("ergotamine", "erythromycin"),
        ("dihydroergotamine", "erythromycin"),
        ("tizanidine 4 mg", "ciprofloxacin 500 mg"),
        ("Zanaflex 4 mg", "fluvoxamine 50 mg"),
        ("tizanidine", "amiodarone"),
        ("ramelteon 8 mg", "fluvoxamine 100 mg"),
        ("Rozerem", "amiodarone"),
        ("sumatriptan", "methylene blue"),
        ("ritonavir", "rifabutin"),
    ],
)
def test_onc_member_pairs_are_one_critical_alert(current: str, proposed: str) -> None:
    alert = _only_ddi(current, proposed)
    assert alert.severity is Severity.CRITICAL
    assert any("Phansalkar" in r for r in alert.references)


def test_a_76_year_old_on_warfarin_verapamil_and_digoxin_gets_clinical_alerts() -> None:
    result = _run(("warfarin 5 mg", "verapamil 120 mg", "digoxin 0.125 mg"), age=76)
    ddi = _ddi(result)
    assert ddi, [a.summary for a in result.alerts]
    (digoxin,) = [a for a in ddi if set(a.involved_ids) == {"m1", "m2"}]
    assert digoxin.severity is Severity.HIGH
    assert "P-glycoprotein" in digoxin.detail and "Halve the digoxin dose" in digoxin.recommendation


# --- grades by mechanism --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("current", "proposed", "severity"),
    [
        ("midazolam", "ketoconazole", Severity.CRITICAL),  # label contraindication
        ("tacrolimus", "voriconazole", Severity.HIGH),  # narrow therapeutic index
        ("quetiapine", "clarithromycin", Severity.MODERATE),  # sensitive substrate, no label action
        ("tacrolimus", "rifampin", Severity.HIGH),  # loss of effect: rejection
        ("warfarin", "fluconazole", Severity.HIGH),
        ("pimozide", "azithromycin", Severity.CRITICAL),  # QT: label contraindicates QT drugs
        ("azithromycin", "ondansetron", Severity.HIGH),  # two known-risk QT drugs
        ("thioridazine", "paroxetine", Severity.CRITICAL),
        ("tamoxifen", "paroxetine", Severity.HIGH),
        ("oxycodone", "alprazolam", Severity.HIGH),
        ("oxycodone", "gabapentin", Severity.MODERATE),
        ("amiloride", "potassium chloride", Severity.CRITICAL),
        ("spironolactone", "trimethoprim", Severity.HIGH),
        ("lithium", "hydrochlorothiazide", Severity.HIGH),
        ("rosuvastatin", "cyclosporine", Severity.HIGH),
        ("pitavastatin", "cyclosporine", Severity.CRITICAL),
        ("dabigatran", "rifampin", Severity.HIGH),
        ("colchicine", "clarithromycin", Severity.HIGH),
        ("theophylline", "ciprofloxacin", Severity.HIGH),
        ("apixaban", "clopidogrel", Severity.HIGH),
        ("sertraline", "ibuprofen", Severity.MODERATE),
        ("oxybutynin", "diphenhydramine", Severity.MODERATE),  # anticholinergic burden
        ("warfarin", "fluvastatin", Severity.MODERATE),  # on the non-interruptive list
    ],
)
def test_mechanism_grades(current: str, proposed: str, severity: Severity) -> None:
    grades = [a.severity for a in _run((current,), (proposed,)).alerts if a.kind is AlertKind.DRUG_DRUG_INTERACTION]
    assert grades and max(grades) is severity


def test_a_booster_with_the_drug_it_boosts_is_not_an_interaction() -> None:
    assert not _ddi(_run(("darunavir 800 mg",), ("ritonavir 100 mg",)))
    assert not _ddi(_run(("nirmatrelvir",), ("ritonavir",)))
    # The same booster still meets what it is not given for.
    assert _only_ddi("ritonavir", "quetiapine").severity is Severity.MODERATE


def test_a_statin_that_does_not_depend_on_cyp3a4_is_not_interrupted() -> None:
    alert = _only_ddi("pravastatin 40 mg", "clarithromycin 500 mg")
    assert alert.severity is Severity.MODERATE and "OATP1B1" in alert.detail


# --- one alert per finding; authored words; tenant re-grading --------------------------------------


def test_one_alert_per_finding_with_the_rule_speaking_and_every_source_listed() -> None:
    (alert,) = _ddi(_run(("simvastatin 40 mg",), ("clarithromycin 500 mg",)))
    assert alert.severity is Severity.CRITICAL
    # The ONC rule's clinicians' text speaks; the mechanism pair and the curated pair are folded in.
    assert alert.rule_id == "onc-statin-cyp3a4-inhibitor" and alert.suppressed >= 2
    assert any("Table of Substrates, Inhibitors and Inducers" in r for r in alert.references)


def test_without_a_rule_the_most_severe_source_speaks() -> None:
    # Digoxin with amiodarone: the curated pair and the P-gp mechanism pair are both HIGH; one alert.
    (alert,) = _ddi(_run(("digoxin",), ("amiodarone",)))
    assert alert.severity is Severity.HIGH and alert.rule_id.startswith("kb:") and alert.suppressed == 1


def test_a_tenant_can_lower_a_mechanism_pair() -> None:
    knowledge = shipped()[0]
    (pair,) = knowledge.interactions.between([("ingredient", "digoxin")], [("ingredient", "verapamil")])
    lowered = Knowledge(
        vocabulary=knowledge.vocabulary,
        interactions=InteractionKnowledge.from_pairs(
            knowledge.interactions.pairs, [PairOverride(pair.id, severity=Severity.LOW)]
        ),
        allergens=knowledge.allergens,
        version=knowledge.version + ":tenant",
    )
    (alert,) = _ddi(_run(("digoxin",), ("verapamil",), knowledge=lowered))
    assert alert.severity is Severity.LOW


def test_the_nephrotoxic_triple_is_one_three_drug_finding() -> None:
    result = _run(("lisinopril 20 mg", "hydrochlorothiazide 25 mg"), ("ibuprofen 400 mg",))
    (triple,) = [a for a in result.alerts if a.rule_id == "ddi-nephrotoxic-triple"]
    assert triple.severity is Severity.HIGH and set(triple.involved_ids) == {"m0", "m1", "p0"}


# --- the build ---------------------------------------------------------------------------------------


def test_the_shipped_pairs_file_is_what_the_build_makes() -> None:
    assert build_mechanisms.main(["--check"]) == 0


def _folder(tmp_path: Path, mechanisms: str) -> Path:
    for name in ("vocabulary.yaml", "interactions.csv"):
        shutil.copy(KNOWLEDGE_DIR / name, tmp_path / name)
    (tmp_path / "mechanisms.yaml").write_text(textwrap.dedent(mechanisms), encoding="utf-8")
    return tmp_path


def test_a_name_the_vocabulary_lacks_is_left_out_and_reported(tmp_path: Path) -> None:
    folder = _folder(
        tmp_path,
        """
        sources: {s: "a source"}
        sets:
          x: {source: s, members: [warfarin, zzqxamab]}
        groups:
          - {id: g, title: t, a: x, b: [fluconazole], severity: HIGH, evidence: CLINICAL_TRIAL,
             type: PHARMACOKINETIC, mechanism: m, management: n, source: [s]}
        """,
    )
    text, figures = build_mechanisms.build(folder)
    assert "zzqxamab" in figures["left_out"] and figures["pairs"] == 1
    assert text.splitlines()[1].startswith("fluconazole,warfarin,HIGH,")


def test_a_group_without_a_known_source_is_refused(tmp_path: Path) -> None:
    folder = _folder(
        tmp_path,
        """
        sources: {s: "a source"}
        sets: {}
        groups:
          - {id: g, title: t, a: [warfarin], b: [fluconazole], severity: HIGH, evidence: CLINICAL_TRIAL,
             type: PHARMACOKINETIC, mechanism: m, management: n, source: [nowhere]}
        """,
    )
    with pytest.raises(build_mechanisms.BuildError, match="unknown source key"):
        build_mechanisms.build(folder)


def test_the_knowledge_version_changes_when_the_mechanism_data_does(tmp_path: Path) -> None:
    folder = _folder(tmp_path, "sources: {}\n")
    rows = (KNOWLEDGE_DIR / "mechanism_pairs.csv").read_text(encoding="utf-8").splitlines(keepends=True)
    (folder / "mechanism_pairs.csv").write_text("".join(rows[:50]), encoding="utf-8")
    before = load_knowledge_files(folder)
    (folder / "mechanism_pairs.csv").write_text("".join(rows[:49]), encoding="utf-8")
    after = load_knowledge_files(folder)
    assert before.version != after.version and len(before.interactions) == len(after.interactions) + 1
