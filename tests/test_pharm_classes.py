"""FDA pharmacologic classes (EPC, MoA, CS, PE) of the ingredients: the shipped table built by
rules/knowledge/build_pharm_classes.py from the FDA NDC Directory, the way the build attributes a
product's classes to its substances, and the vocabulary and `praneya check --json` views of them."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

import pytest

from engine.adhoc import medication_classes
from engine.knowledge import (
    PHARM_CLASS_FILE,
    KnowledgeFileError,
    load_knowledge_files,
    parse_pharm_classes,
    pharm_class_id,
)
from engine.model import MedicationFact

ROOT = Path(__file__).resolve().parent.parent
KNOWLEDGE_DIR = ROOT / "rules" / "knowledge"
VOCAB = load_knowledge_files(KNOWLEDGE_DIR).vocabulary


def _build_module() -> Any:
    spec = importlib.util.spec_from_file_location("build_pharm_classes", KNOWLEDGE_DIR / "build_pharm_classes.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["build_pharm_classes"] = module
    spec.loader.exec_module(module)
    return module


def test_shipped_classes_of_well_known_ingredients() -> None:
    assert "epc:penicillin-class antibacterial" in VOCAB.pharm_classes_of("amoxicillin")
    assert "cs:penicillins" in VOCAB.pharm_classes_of("amoxicillin")
    assert "epc:angiotensin converting enzyme inhibitor" in VOCAB.pharm_classes_of("lisinopril")
    assert "moa:cyclooxygenase inhibitors" in VOCAB.pharm_classes_of("ibuprofen")
    # read by difference from sulfamethoxazole/trimethoprim, the only products that hold it
    assert "epc:sulfonamide antimicrobial" in VOCAB.pharm_classes_of("sulfamethoxazole")
    assert "epc:sulfonamide antimicrobial" not in VOCAB.pharm_classes_of("trimethoprim")
    assert VOCAB.pharm_classes_of("zzqx") == ()


def test_every_shipped_row_names_its_fda_source() -> None:
    lines = (KNOWLEDGE_DIR / PHARM_CLASS_FILE).read_text(encoding="utf-8").splitlines()
    rows = [line.split("\t") for line in lines[1:]]
    assert len(rows) > 5000
    assert all(r[3].startswith("fda_ndc ") and r[1] in ("EPC", "MoA", "CS", "PE") for r in rows)
    in_vocabulary = {r[0] for r in rows if "not in the vocabulary" not in r[3]}
    assert len(in_vocabulary) > 1000 and in_vocabulary <= set(VOCAB.ingredients)


def test_parse_refuses_an_unknown_type_and_interns_ids() -> None:
    text = "ingredient\ttype\tclass\tsource\nfoo\tEPC\tBar Agent\tfda_ndc FOO (1 products)\n"
    assert parse_pharm_classes(text) == {"foo": ("epc:bar agent",)}
    with pytest.raises(KnowledgeFileError, match="type"):
        parse_pharm_classes(text.replace("\tEPC\t", "\tATC\t"))
    with pytest.raises(KnowledgeFileError, match="header"):
        parse_pharm_classes("ingredient\tclass\n")
    assert pharm_class_id("MoA", "Cyclooxygenase  Inhibitors") == "moa:cyclooxygenase inhibitors"


def test_build_attributes_single_substance_products_and_combinations_by_difference() -> None:
    build = _build_module()
    assert build.parse_classes("Penicillin-class Antibacterial [EPC],Penicillins [Chemical/Ingredient],X [EXT]") == [
        ("EPC", "Penicillin-class Antibacterial"),
        ("CS", "Penicillins"),
    ]

    class FakeVocabulary:
        salt_words = frozenset({"sodium", "potassium", "trihydrate"})

        def normalize_drug(self, name: str) -> object:
            class Drug:
                recognised = name in ("amoxicillin", "clavulanate", "lisinopril")
                ingredients = (name,) if recognised else ()

            return Drug()

    def row(substances: str, classes: str) -> dict[str, str]:
        return {"PRODUCTTYPENAME": "HUMAN PRESCRIPTION DRUG", "SUBSTANCENAME": substances, "PHARM_CLASSES": classes}

    rows = [
        row("AMOXICILLIN", "Penicillin-class Antibacterial [EPC],Penicillins [CS]"),
        row("AMOXICILLIN", "Penicillin-class Antibacterial [EPC],Penicillins [CS]"),
        row("AMOXICILLIN", "Penicillin-class Antibacterial [EPC],Penicillins [CS],Wrong Class [EPC]"),
        row(
            "AMOXICILLIN; CLAVULANATE POTASSIUM",
            "Penicillin-class Antibacterial [EPC],Penicillins [CS],beta Lactamase Inhibitor [EPC]",
        ),
        row("PIPERACILLIN SODIUM; TAZOBACTAM SODIUM", "Penicillin-class Antibacterial [EPC]"),
        row("AMPICILLIN SODIUM", "Penicillin-class Antibacterial [EPC]"),
        row("LISINOPRIL", ""),
    ]
    out, notes = build.build(rows, build.Joiner(FakeVocabulary()))
    got = {(r[0], r[1], r[2]) for r in out}
    assert ("amoxicillin", "EPC", "Penicillin-class Antibacterial") in got
    assert ("amoxicillin", "EPC", "Wrong Class") not in got  # 1 of 3 products: dropped and said so
    assert any("Wrong Class" in n for n in notes)
    assert ("clavulanate", "EPC", "beta Lactamase Inhibitor") in got  # by difference
    assert not any(r[0] in ("piperacillin", "tazobactam") for r in out)  # two unknowns: never guessed
    ampicillin = [r for r in out if r[0] == "ampicillin"]
    assert ampicillin and "not in the vocabulary" in ampicillin[0][3] and "AMPICILLIN SODIUM" in ampicillin[0][3]


def test_check_json_lists_each_medications_classes() -> None:
    meds = (MedicationFact("m1", "Amoxicillin 500 MG Oral Capsule"), MedicationFact("p1", "zzqx", proposed=True))
    out = medication_classes(VOCAB, meds)
    assert out[0]["ingredients"] == ["amoxicillin"]
    assert "epc:penicillin-class antibacterial" in out[0]["pharm_classes"]["amoxicillin"]
    assert out[0]["recognised"] is True
    assert out[1] == {
        "id": "p1",
        "name": "zzqx",
        "proposed": True,
        "recognised": False,
        "ingredients": [],
        "pharm_classes": {},
    }
