"""Drug, food, allergen and condition normalisation; severity scales."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.knowledge import Knowledge, load_knowledge_files, severity_from_source
from engine.model import Severity

KNOWLEDGE = load_knowledge_files(Path(__file__).parent / "data" / "knowledge")
VOCAB = KNOWLEDGE.vocabulary


@pytest.mark.parametrize(
    ("written", "ingredients"),
    [
        ("sertraline", ("sertraline",)),
        ("  SERTRALINE  ", ("sertraline",)),
        ("sertraline 50 mg tablet", ("sertraline",)),
        ("Sertraline 50mg", ("sertraline",)),
        ("metoprolol succinate", ("metoprolol",)),
        ("Metoprolol Succinate ER 25 mg", ("metoprolol",)),
        ("Toprol XL", ("metoprolol",)),
        ("Zoloft", ("sertraline",)),
        ("Zoloft (sertraline) 100 mg", ("sertraline",)),
        ("sulfamethoxazole/trimethoprim", ("sulfamethoxazole", "trimethoprim")),
        ("sulfamethoxazole / trimethoprim 800/160 mg", ("sulfamethoxazole", "trimethoprim")),
        ("sulfamethoxazole-trimethoprim", ("sulfamethoxazole", "trimethoprim")),
        ("sulfamethoxazole and trimethoprim", ("sulfamethoxazole", "trimethoprim")),
        ("Bactrim", ("sulfamethoxazole", "trimethoprim")),
        ("Bactrim DS", ("sulfamethoxazole", "trimethoprim")),
        ("co-trimoxazole", ("sulfamethoxazole", "trimethoprim")),
        ("amoxicillin + clavulanic acid", ("amoxicillin", "clavulanic acid")),
        # a brand name with a number in it, then the dose
        ("Tylenol 8 HR 650 mg", ("paracetamol",)),
        # a name that is itself a salt word is matched whole before salts are stripped
        ("potassium chloride", ("potassium chloride",)),
    ],
)
def test_drug_names_normalise_to_ingredients(written: str, ingredients: tuple[str, ...]) -> None:
    drug = VOCAB.normalize_drug(written)
    assert drug.ingredients == ingredients
    assert drug.recognised


def test_classes_follow_ingredients() -> None:
    assert VOCAB.normalize_drug("Bactrim").classes == ("sulfonamide_antibiotic",)
    assert set(VOCAB.normalize_drug("clarithromycin 500 mg").classes) == {
        "macrolide",
        "strong_cyp3a4_inhibitor",
    }


def test_unknown_drug_is_reported_and_kept() -> None:
    drug = VOCAB.normalize_drug("Zyxorelin 10 mg tablet")
    assert not drug.recognised
    assert drug.ingredients == ("zyxorelin",)
    assert drug.unrecognised == ("zyxorelin",)


def test_a_known_leading_name_is_suggested_never_applied() -> None:
    # "Advil PM" adds diphenhydramine; screening it as ibuprofen alone would hide that.
    drug = VOCAB.normalize_drug("Advil PM")
    assert not drug.recognised
    assert drug.status == "unrecognised"
    assert "ibuprofen" not in drug.ingredients
    assert drug.unrecognised == ("advil pm",)
    assert "advil" in drug.suggestions


def test_empty_name_is_not_silently_recognised() -> None:
    assert not VOCAB.normalize_drug("   ").recognised


names = st.one_of(
    st.sampled_from(
        sorted(VOCAB.ingredients)
        + sorted(VOCAB.aliases)
        + ["Toprol XL 50 mg", "foo-bar", "x and y", "Advil PM"]
    ),
    st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), max_size=30),
)


@given(names)
def test_normalisation_is_idempotent(name: str) -> None:
    drug = VOCAB.normalize_drug(name)
    for ingredient in drug.ingredients:
        again = VOCAB.normalize_drug(ingredient)
        assert again.ingredients == (ingredient,)
        assert again.recognised == (ingredient in VOCAB.ingredients)


def test_foods_and_recipe_lines() -> None:
    assert VOCAB.normalize_food("Grapefruit Juice").groups == ("grapefruit",)
    food = VOCAB.normalize_food("1 cup fresh grapefruit juice (chilled)")
    assert (food.name, food.recognised) == ("grapefruit juice", True)
    assert VOCAB.normalize_food("peanuts").name == "peanut"
    assert VOCAB.normalize_food("2 tbsp peanut butter").groups == ("legume", "peanut")
    assert not VOCAB.normalize_food("quinoa").recognised


def test_allergens() -> None:
    pen = VOCAB.normalize_allergen("Penicillins")
    assert pen.classes == ("penicillin",) and pen.cross[0].target == "cephalosporin"
    assert VOCAB.normalize_allergen("penicillin allergy").name == "penicillin"
    assert VOCAB.normalize_allergen("PCN").name == "penicillin"  # a synonym
    # an allergy recorded as a drug name covers that drug's ingredients
    assert VOCAB.normalize_allergen("Augmentin").ingredients == ("amoxicillin", "clavulanic acid")
    # as a class name
    assert VOCAB.normalize_allergen("Macrolides").classes == ("macrolide",)
    assert VOCAB.normalize_allergen("shrimp", "FOOD").foods == ("shrimp",)
    unknown = VOCAB.normalize_allergen("Zyxorelin")
    assert not unknown.recognised and unknown.ingredients == ("zyxorelin",)


def test_conditions() -> None:
    assert VOCAB.normalize_condition("CKD").id == "chronic_kidney_disease"
    assert (
        VOCAB.normalize_condition("Chronic kidney disease, stage 4", "N18.4").id == "chronic_kidney_disease"
    )
    assert VOCAB.normalize_condition("heart_failure").id == "heart_failure"
    other = VOCAB.normalize_condition("Gout")
    assert (other.id, other.recognised) == ("gout", False)


@pytest.mark.parametrize(
    ("value", "severity"),
    [
        ("1", Severity.CRITICAL),
        ("2", Severity.HIGH),
        ("3", Severity.MODERATE),
        ("9", Severity.INFO),
        ("X", Severity.CRITICAL),
        ("d", Severity.HIGH),
        ("C", Severity.MODERATE),
        ("B", Severity.LOW),
        ("A", Severity.INFO),
        ("Contraindicated", Severity.CRITICAL),
        ("major", Severity.HIGH),
        ("Moderate", Severity.MODERATE),
        ("minor", Severity.LOW),
        ("unknown", Severity.INFO),
        ("critical", Severity.CRITICAL),
        (" HIGH ", Severity.HIGH),
    ],
)
def test_severity_scales(value: str, severity: Severity) -> None:
    assert severity_from_source(value) is severity


@pytest.mark.parametrize("value", ["Q", "4", "", "very bad", "0"])
def test_unknown_severity_is_refused_by_name(value: str) -> None:
    with pytest.raises(ValueError, match=repr(value).replace("(", r"\(")):
        severity_from_source(value)


SCALES = {  # most severe first, as each source orders its grades
    "fdb": ["1", "2", "3", "9"],
    "lexicomp": ["X", "D", "C", "B", "A"],
    "words": ["contraindicated", "major", "moderate", "minor"],
    "ours": ["CRITICAL", "HIGH", "MODERATE", "LOW", "INFO"],
}


@given(st.sampled_from(sorted(SCALES)), st.data())
def test_severity_normalisation_is_monotone_on_each_scale(scale: str, data: st.DataObject) -> None:
    grades = SCALES[scale]
    i = data.draw(st.integers(0, len(grades) - 1))
    j = data.draw(st.integers(0, len(grades) - 1))
    if i <= j:  # grade i is at least as severe as grade j on the source scale
        assert severity_from_source(grades[i]) >= severity_from_source(grades[j])


def test_knowledge_version_changes_with_content(tmp_path: Path) -> None:
    source = Path(__file__).parent / "data" / "knowledge"
    for name in ("vocabulary.yaml", "interactions.csv"):
        (tmp_path / name).write_text((source / name).read_text())
    before = load_knowledge_files(tmp_path).version
    with (tmp_path / "interactions.csv").open("a") as f:
        f.write("ibuprofen,naproxen,moderate,Two NSAIDs.,,,,,Fixture\n")
    after: Knowledge = load_knowledge_files(tmp_path)
    assert after.version != before and len(after.interactions) == len(KNOWLEDGE.interactions) + 1
