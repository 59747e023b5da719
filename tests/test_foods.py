"""Foods and recipes: ingredient lines read as foods, food groups with their drugs, food allergens
and their hidden forms, and the measured parse rate on public recipe lines (README "Food coverage")."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
import yaml

from engine.evaluate import evaluate
from engine.knowledge import load_knowledge_files
from engine.model import (
    Alert,
    AlertKind,
    AllergyFact,
    EvaluationRequest,
    EvaluationResult,
    MedicationFact,
    PatientSnapshot,
    Severity,
)
from engine.rules import RuleSet

ROOT = Path(__file__).resolve().parent.parent
KDIR = ROOT / "rules" / "knowledge"
KNOWLEDGE = load_knowledge_files(KDIR)
VOCAB = KNOWLEDGE.vocabulary
FOODS_DOC = yaml.safe_load((KDIR / "foods.yaml").read_text(encoding="utf-8"))
NO_RULES = RuleSet.build([], "none")
DATA = Path(__file__).parent / "data" / "foods"


def _evaluate(
    foods: tuple[str, ...], meds: tuple[str, ...] = (), allergies: tuple[AllergyFact, ...] = ()
) -> EvaluationResult:
    snapshot = PatientSnapshot(
        "p", "t", medications=tuple(MedicationFact(f"m{i}", m) for i, m in enumerate(meds)), allergies=allergies
    )
    return evaluate(snapshot, EvaluationRequest(proposed_foods=foods), NO_RULES, KNOWLEDGE)


def _of(result: EvaluationResult, kind: AlertKind) -> list[Alert]:
    return [a for a in result.alerts if a.kind is kind]


# -- ingredient lines --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "foods", "groups"),
    [
        ("200 g aged cheddar, grated", ["cheddar"], {"dairy", "tyramine_rich", "polyvalent_cation"}),
        ("1 tbsp soy sauce", ["soy sauce"], {"soy", "wheat", "tyramine_rich"}),
        ("2 cups whole milk", ["whole milk"], {"dairy", "polyvalent_cation"}),
        ("1/2 tsp kosher salt", ["kosher salt"], set()),
        ("1 (14 oz) can coconut milk", ["coconut milk"], set()),  # not dairy, not a tree nut (FDA 2025)
        ("juice of 1 grapefruit", ["grapefruit juice"], {"grapefruit"}),
        ("walnuts", ["walnut"], {"tree_nut"}),
        ("eggs", ["egg"], {"egg"}),
        ("3 large tomatoes, diced", ["tomato"], set()),
        ("1 cup mixed berries", ["mixed berry"], set()),
        ("2 peaches, sliced", ["peach"], set()),
        ("4 bay leaves", ["bay leaf"], set()),
        ("3 cloves garlic, minced", ["garlic"], set()),
        ("2 garlic cloves", ["garlic"], set()),
        ("1/2 tsp ground cloves", ["clove"], set()),
        ("1 ½ cups all-purpose flour", ["all purpose flour"], {"wheat", "gluten"}),
        ("salt and pepper to taste", ["salt", "pepper"], set()),
        ("1 cup almond milk", ["almond milk"], {"tree_nut"}),
        ("1/4 cup raisins (or chopped walnuts)", ["raisin", "walnut"], {"potassium_rich", "tree_nut"}),
        ("2 tbsp black licorice, chopped", ["black licorice"], {"licorice"}),
        ("1 cup strong black coffee", [], set()),  # "strong" is not a known word: partial (below)
    ][:-1],
)
def test_ingredient_lines_read_as_foods(line: str, foods: list[str], groups: set[str]) -> None:
    read = VOCAB.food_line(line)
    assert read.status == "resolved", (read.status, read.unrecognised)
    assert [f.name for f in read.foods] == foods
    assert {g for f in read.foods for g in f.groups} >= groups


def test_a_word_that_is_no_known_food_leaves_the_line_partial() -> None:
    read = VOCAB.food_line("1 cup strong black coffee")
    assert read.status == "partial" and read.unrecognised == ("strong",)
    assert [f.name for f in read.foods] == ["coffee"]  # what was found is still screened
    assert not VOCAB.food_line("2 cups zzqy").foods and VOCAB.food_line("2 cups zzqy").status == "unrecognised"


def test_unknown_ingredient_makes_the_evaluation_incomplete_and_says_which() -> None:
    result = _evaluate(("1 cup rice", "2 tbsp zzqy paste"))
    assert not result.complete
    (item,) = result.unresolved
    assert (item.kind, item.reason, item.parts) == ("food", "unrecognised", ("zzqy", "paste"))
    assert item.text == "2 tbsp zzqy paste"
    (info,) = [a for a in result.alerts if a.kind is AlertKind.OTHER]
    assert info.severity is Severity.INFO and info.involved_ids == (item.item_id,)
    assert _evaluate(("1 cup rice", "2 tbsp soy sauce")).complete


def test_an_allergy_to_the_unknown_word_still_meets_the_line() -> None:
    # Fail closed: an allergen we do not know is looked for, word for word, in lines we do not know.
    allergy = AllergyFact("a1", "zzqy", "FOOD", "SEVERE")
    (alert,) = _of(_evaluate(("2 tbsp zzqy paste",), allergies=(allergy,)), AlertKind.FOOD_ALLERGY)
    assert alert.severity is Severity.CRITICAL


# -- allergies: plurals, variants, hidden forms --------------------------------------------------------


@pytest.mark.parametrize(
    ("allergen", "food"),
    [
        ("walnut", "walnuts"),
        ("walnuts", "1/2 cup walnut halves, toasted"),
        ("walnut", "2 tbsp walnut oil"),
        ("tree nuts", "1 cup chopped pecans"),
        ("coconut", "1 (14 oz) can coconut milk"),
        ("milk", "2 tbsp ghee"),
        ("milk", "1 scoop whey protein"),
        ("dairy", "sodium caseinate"),
        ("milk", "lactalbumin"),
        ("milk", "1/2 cup goat milk"),  # milk of other ruminants (FDA 2025)
        ("egg", "2 egg whites"),
        ("egg", "ovalbumin"),
        ("eggs", "1/4 cup mayonnaise"),
        ("egg", "2 quail eggs"),
        ("sesame", "2 tbsp tahini"),
        ("fish", "4 oz surimi"),
        ("shellfish", "4 oz imitation crab"),
        ("wheat", "1 cup semolina"),
        ("soy", "1 tbsp white miso"),
        ("soy", "soy lecithin"),
        ("peanut", "arachis oil"),
        ("mustard", "1 tsp dijon mustard"),
        ("celery", "1 stalk celery, diced"),
        ("gluten", "1 cup pearl barley"),
        ("sulfites", "1/2 cup dry white wine"),
        ("lupin", "2 tbsp lupin flour"),
        ("mollusc", "6 oysters"),
    ],
)
def test_food_allergy_meets_its_forms(allergen: str, food: str) -> None:
    allergy = AllergyFact("a1", allergen, "FOOD", "ANAPHYLACTIC")
    alerts = _of(_evaluate((food,), allergies=(allergy,)), AlertKind.FOOD_ALLERGY)
    assert alerts and alerts[0].severity is Severity.CRITICAL and alerts[0].interruptive


@pytest.mark.parametrize(
    ("allergen", "food"),
    [
        ("milk", "1 (14 oz) can coconut milk"),  # coconut milk is no dairy
        ("milk", "1 cup almond milk"),
        ("tree nut", "1 cup shredded coconut"),  # coconut left FDA's tree nut list in 2025
        ("peanut", "1 cup cashews"),
        ("egg", "1 eggplant, cubed"),
        ("fish", "1 tbsp soy sauce"),
        ("walnut", "2 tbsp peanut butter"),
    ],
)
def test_food_allergy_does_not_fire_on_lookalikes(allergen: str, food: str) -> None:
    assert not _of(_evaluate((food,), allergies=(AllergyFact("a1", allergen, "FOOD"),)), AlertKind.FOOD_ALLERGY)


def test_us_and_eu_major_allergens_are_all_screenable() -> None:
    groups = FOODS_DOC["groups"]
    us = {g for g, spec in groups.items() if "us" in spec.get("allergen_list", [])}
    eu = {g for g, spec in groups.items() if "eu" in spec.get("allergen_list", [])}
    assert us == {"dairy", "egg", "fish", "crustacean_shellfish", "tree_nut", "peanut", "wheat", "soy", "sesame"}
    assert len(eu) == 14  # Regulation (EU) 1169/2011 Annex II
    covered = {g for a in VOCAB.allergens.values() if a.category == "FOOD" for g in a.match_food_groups}
    assert us | eu <= covered


# -- food groups with their drugs ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("med", "food", "severity", "words"),
    [
        ("tacrolimus 1 mg", "1 cup grapefruit juice", Severity.HIGH, "grapefruit"),
        ("cyclosporine", "juice of 1 grapefruit", Severity.HIGH, "grapefruit"),
        ("felodipine 5 mg", "1 pomelo", Severity.HIGH, "grapefruit"),
        ("nifedipine ER 30 mg", "grapefruit", Severity.MODERATE, "grapefruit"),
        ("simvastatin 40 mg", "1/2 grapefruit", Severity.HIGH, "grapefruit"),
        ("phenelzine", "200 g aged cheddar, grated", Severity.CRITICAL, "tyramine"),
        ("linezolid", "1 tbsp soy sauce", Severity.MODERATE, "tyramine"),
        ("warfarin 5 mg", "2 cups kale, chopped", Severity.MODERATE, "vitamin k"),
        ("ciprofloxacin 500 mg", "2 cups whole milk", Severity.MODERATE, "6 hours"),
        ("tetracycline 250 mg", "1 cup plain yogurt", Severity.MODERATE, "2 hours"),
        ("levothyroxine 50 mcg", "1 cup calcium-fortified orange juice", Severity.MODERATE, "4 hours"),
        ("risedronate 35 mg", "1 cup milk", Severity.MODERATE, "30 minutes"),
        ("eltrombopag", "1/4 cup cheddar cheese (shredded)", Severity.MODERATE, "4 hours"),
        ("disulfiram", "1/2 cup dry white wine", Severity.CRITICAL, "alcohol"),
        ("metronidazole", "2 tbsp sherry", Severity.HIGH, "alcohol"),
        ("zolpidem", "1 glass red wine", Severity.HIGH, "alcohol"),
        ("digoxin 0.125 mg", "black licorice", Severity.HIGH, "potassium"),
        ("hydrochlorothiazide", "licorice root tea", Severity.MODERATE, "potassium"),
        ("theophylline", "2 cups coffee", Severity.MODERATE, "caffeine"),
        ("fluvoxamine", "1 can cola", Severity.MODERATE, "caffeine"),
        ("spironolactone", "1/4 tsp salt substitute", Severity.MODERATE, "potassium"),
        ("lisinopril", "2 bananas", Severity.LOW, "potassium"),
    ],
)
def test_food_drug_interactions(med: str, food: str, severity: Severity, words: str) -> None:
    alerts = _of(_evaluate((food,), (med,)), AlertKind.FOOD_DRUG_INTERACTION)
    assert alerts, (med, food)
    top = alerts[0]
    assert top.severity is severity
    assert words in (top.detail + " " + top.recommendation).lower()
    assert top.references


def test_no_food_alert_for_unrelated_pairs() -> None:
    for med, food in (("pravastatin", "grapefruit"), ("doxycycline", "grapefruit"), ("amoxicillin", "2 cups milk")):
        assert not _of(_evaluate((food,), (med,)), AlertKind.FOOD_DRUG_INTERACTION), (med, food)


def _food_rows() -> list[dict[str, str]]:
    text = (KDIR / "interactions.csv").read_text(encoding="utf-8")
    return [r for r in csv.DictReader(io.StringIO(text)) if r["drug_b"].startswith("food")]


def test_every_food_pair_joins_the_vocabulary_and_names_its_source() -> None:
    known_groups = set(FOODS_DOC["groups"])
    for row in _food_rows():
        drug, food = row["drug_a"], row["drug_b"]
        kind, _, name = food.partition(":")
        assert (name in known_groups) if kind == "food_group" else (name in VOCAB.foods), food
        if drug.startswith("class:"):
            assert drug.removeprefix("class:") in VOCAB.classes, drug
        else:
            # The ingredient name is the join key to the RxNorm table (rxnorm.tsv) or the curated list.
            normalized = VOCAB.normalize_drug(drug)
            assert normalized.recognised and normalized.ingredients == (drug,), drug
        assert row["source"].strip() and row["recommendation"].strip(), drug


def test_every_group_is_described_with_a_source() -> None:
    sources = set(FOODS_DOC["sources"])
    groups = FOODS_DOC["groups"]
    assert {spec["source"] for spec in groups.values()} <= sources
    used = {g for f in VOCAB.foods.values() for g in f.groups}
    assert used <= set(groups), used - set(groups)
    for allergen in VOCAB.allergens.values():
        if allergen.category == "FOOD":
            assert set(allergen.match_food_groups) <= set(groups), allergen.name


# -- the measured figure (README "Food coverage") ----------------------------------------------------------


def _lines(name: str) -> list[tuple[str, set[str]]]:
    rows = []
    for raw in (DATA / name).read_text(encoding="utf-8").splitlines():
        if raw.strip() and not raw.startswith("#"):
            line, expected, _recipe = raw.split("\t")
            rows.append((line, set(expected.split(";"))))
    return rows


def _score(name: str) -> tuple[int, int, int]:
    """(lines read exactly as expected, lines silently missing a screened group, total)."""
    exact = silent = 0
    rows = _lines(name)
    for line, expected in rows:
        read = VOCAB.food_line(line)
        names = {f.name for f in read.foods}
        exact += read.status == "resolved" and names == expected
        wanted = {g for e in expected for g in VOCAB.foods[e].groups}
        silent += read.status == "resolved" and not wanted <= {g for f in read.foods for g in f.groups}
    return exact, silent, len(rows)


def test_public_recipe_lines_parse_rate() -> None:
    assert _score("recipe_lines.tsv") == (48, 0, 48)


def test_held_out_lines_parse_rate() -> None:
    # The two misses are fingerling potatoes and nicoise olives: reported partial (fail closed).
    assert _score("heldout_lines.tsv") == (46, 0, 48)
