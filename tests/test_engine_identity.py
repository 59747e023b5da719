"""Drug identity: folding, the RxNorm display grammar, codes, and resolution that never guesses."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.adhoc import CaseError, case_from_json, flags_case
from engine.evaluate import evaluate
from engine.identity import Coding, coding_from_text, fold, normalise_ndc, parse_coding, parse_drug_text
from engine.knowledge import load_knowledge_files
from engine.model import AllergyFact, EvaluationRequest, MedicationFact, PatientSnapshot
from engine.rules import RuleSet, load_rule_files

RULES = Path(__file__).resolve().parents[1] / "rules"
KNOWLEDGE = load_knowledge_files(RULES / "knowledge")
VOCAB = KNOWLEDGE.vocabulary
RULESET = RuleSet.build([r.rule for r in load_rule_files([RULES]) if r.rule is not None], version="test")


def ingredients(text: str, coding: Coding | None = None) -> tuple[str, ...] | None:
    drug = VOCAB.normalize_drug(text, coding)
    return tuple(sorted(drug.ingredients)) if drug.recognised else None


# -- folding ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "phen\u200belzine",  # zero-width space
        "\ufeffphenelzine",  # byte-order mark
        "phen\u00adelzine",  # soft hyphen
        "\uff50\uff48\uff45\uff4e\uff45\uff4c\uff5a\uff49\uff4e\uff45",  # full-width letters
        "ph\u00e9nelzine",  # accented
        "PHENELZINE",
        "  phenelzine\u00a0",  # NBSP
        "phe\u0301nelzine",  # combining accent
    ],
)
def test_invisible_and_compatibility_characters_do_not_hide_a_drug(text: str) -> None:
    assert ingredients(text) == ("phenelzine",)


def test_fold_is_idempotent_on_examples() -> None:
    for text in ("Warfarin Sodium", "ｗａｒｆａｒｉｎ", "co\u2013trimoxazole", "St. John\u2019s wort"):
        assert fold(fold(text)) == fold(text)


@given(st.text(max_size=40))
@settings(max_examples=300, deadline=None)
def test_fold_is_idempotent(text: str) -> None:
    assert fold(fold(text)) == fold(text)


# -- the RxNorm display grammar --------------------------------------------------------------------


def test_every_ingredient_of_a_display_string_is_found() -> None:
    # The old normaliser cut this to sulfamethoxazole, so a trimethoprim allergy raised nothing.
    assert ingredients("Sulfamethoxazole 800 MG / Trimethoprim 160 MG Oral Tablet") == (
        "sulfamethoxazole",
        "trimethoprim",
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("24 HR Metoprolol succinate 100 MG Extended Release Oral Tablet", ("metoprolol",)),
        ("10 ML Furosemide 10 MG/ML Injection", ("furosemide",)),
        ("Warfarin Sodium 5 MG Oral Tablet [Coumadin]", ("warfarin",)),
        ("Warfarin Sodium Tablets, USP", ("warfarin",)),
        ("hydrocodone-acetaminophen 5-325 mg tab", ("acetaminophen", "hydrocodone")),
        ("sertraline 50mg tab po daily", ("sertraline",)),
        ("Bactrim DS", ("sulfamethoxazole", "trimethoprim")),
    ],
)
def test_display_and_prescription_grammar(text: str, expected: tuple[str, ...]) -> None:
    assert ingredients(text) == expected


def test_grammar_keeps_route_and_dose_form() -> None:
    parsed = parse_drug_text("Timolol 0.5 % Ophthalmic Solution")
    assert parsed.components == ("timolol",)
    assert parsed.route == "ophthalmic"
    assert parsed.dose_form == "ophthalmic solution"
    assert VOCAB.normalize_drug("timolol (ophthalmic)").route == "ophthalmic"
    assert parse_drug_text("120 ACTUAT albuterol 0.09 MG/ACTUAT Metered Dose Inhaler").components == ("albuterol",)


# -- never guess ------------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["sodium chloride", "calcium chloride", "magnesium chloride"])
def test_salt_words_are_never_stripped_to_another_ingredient(text: str) -> None:
    drug = VOCAB.normalize_drug(text)
    assert "chloride" not in drug.ingredients
    assert drug.ingredients in ((), (fold(text),)) or not drug.recognised or drug.ingredients == (fold(text),)


@pytest.mark.parametrize(("text", "leading"), [("Pfizerpen VK", "pfizerpen"), ("Unisom SleepGels", "unisom")])
def test_no_leading_name_guess(text: str, leading: str) -> None:
    # Pfizerpen is penicillin G, Pfizerpen VK penicillin V; Unisom is doxylamine, its SleepGels diphenhydramine.
    drug = VOCAB.normalize_drug(text)
    assert not drug.recognised
    assert drug.status == "unrecognised"
    assert leading in drug.suggestions
    assert not set(drug.ingredients) & set(VOCAB.normalize_drug(leading).ingredients)


def test_a_product_known_by_its_whole_name_resolves_to_every_ingredient() -> None:
    assert ingredients("Advil PM") == ("diphenhydramine", "ibuprofen")


@pytest.mark.parametrize(("typo", "meant"), [("warfrin", "warfarin"), ("amoxicilin", "amoxicillin")])
def test_a_misspelling_gets_a_suggestion_never_a_resolution(typo: str, meant: str) -> None:
    drug = VOCAB.normalize_drug(typo)
    assert not drug.recognised
    assert meant in drug.suggestions
    assert meant not in drug.ingredients


def test_a_name_with_two_meanings_is_ambiguous() -> None:
    from engine.knowledge import AliasRecord, DrugConcept, IngredientRecord, Vocabulary

    # Made-up codes: a test fixture, not shipped data.
    vocab = Vocabulary(
        ingredients=[IngredientRecord("beta")],
        aliases=[AliasRecord("twinbrand", ("beta",))],
        concepts=[
            DrugConcept("rxnorm", "900001", "IN", "alpha", ("900001",)),
            DrugConcept("rxnorm", "900002", "BN", "Twinbrand", ("900001",)),
        ],
    )
    drug = vocab.normalize_drug("twinbrand 10 mg")
    assert drug.status == "ambiguous"
    assert not drug.recognised
    assert "alpha" not in drug.ingredients and "beta" not in drug.ingredients


KNOWN_NAMES = sorted(set(VOCAB.ingredients) | set(VOCAB.aliases))


@st.composite
def edited_names(draw: st.DrawFn) -> tuple[str, str]:
    name = draw(st.sampled_from(KNOWN_NAMES))
    position = draw(st.integers(0, len(name)))
    edit = draw(st.sampled_from(["insert", "delete", "replace", "swap"]))
    letter = draw(st.sampled_from("abcdefghijklmnopqrstuvwxyz"))
    if edit == "insert":
        edited = name[:position] + letter + name[position:]
    elif edit == "delete":
        edited = name[:position] + name[position + 1 :]
    elif edit == "replace":
        edited = name[:position] + letter + name[position + 1 :]
    else:
        edited = name[: max(position - 1, 0)] + name[position : position + 1] + name[max(position - 1, 0) : position]
        edited += name[position + 1 :]
    return name, edited


@given(edited_names())
@settings(max_examples=500, deadline=None)
def test_a_random_edit_never_resolves_to_a_different_ingredient(pair: tuple[str, str]) -> None:
    original, edited = pair
    found = ingredients(edited)
    if found is None or found == ingredients(original):
        return
    # Resolving to something else is allowed only when the edit spelled another known name exactly.
    drug = VOCAB.normalize_drug(edited)
    assert any(VOCAB._known(candidate) for candidate in (fold(edited), *parse_drug_text(edited).components)), (
        f"{edited!r} (an edit of {original!r}) resolved to {drug.ingredients}"
    )


INVISIBLE = st.sampled_from(["\u200b", "\u200c", "\u200d", "\ufeff", "\u00ad", "\u2060", "\u200e"])


@given(st.sampled_from(sorted(VOCAB.ingredients)), st.lists(st.tuples(st.integers(0, 40), INVISIBLE), max_size=4))
@settings(max_examples=300, deadline=None)
def test_invisible_characters_anywhere_change_nothing(name: str, inserts: list[tuple[int, str]]) -> None:
    noisy = name
    for position, char in inserts:
        noisy = noisy[:position] + char + noisy[position:]
    assert ingredients(noisy) == ingredients(name)


@given(st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=60))
@settings(max_examples=400, deadline=None)
def test_random_unicode_never_invents_an_ingredient(text: str) -> None:
    drug = VOCAB.normalize_drug(text)
    assert drug.status in ("resolved", "unrecognised", "ambiguous", "partial")
    assert drug.recognised == (drug.status == "resolved")
    if drug.recognised:
        # A resolved drug consists of known ingredients only, and its text folded to something.
        assert drug.ingredients and all(i in VOCAB.ingredients for i in drug.ingredients)
        assert fold(text)
    else:
        assert drug.unrecognised


# -- codes ------------------------------------------------------------------------------------------


def test_codings_parse_from_short_names_and_fhir_uris() -> None:
    assert coding_from_text("rxnorm:11289") == Coding("rxnorm", "11289")
    assert coding_from_text("http://www.nlm.nih.gov/research/umls/rxnorm|11289") == Coding("rxnorm", "11289")
    assert coding_from_text("warfarin") is None
    assert parse_coding("http://hl7.org/fhir/sid/ndc", "0093-1712-01") == Coding("ndc", "00093171201")
    assert normalise_ndc("12345-678-90") == "12345067890"
    with pytest.raises(ValueError, match="not supported"):
        parse_coding("http://example.org/drugs", "1")
    with pytest.raises(ValueError, match="not a valid rxnorm code"):
        coding_from_text("rxnorm:abc")


def test_an_unknown_code_falls_back_to_the_text_and_says_so() -> None:
    drug = VOCAB.normalize_drug("warfarin", Coding("rxnorm", "999999999"))
    assert drug.recognised and drug.ingredients == ("warfarin",)
    assert any("unknown code rxnorm:999999999" in n for n in drug.notes)
    alone = VOCAB.normalize_drug("", Coding("rxnorm", "999999999"))
    assert not alone.recognised and alone.unrecognised == ("rxnorm:999999999",)


# -- fail closed ------------------------------------------------------------------------------------


def _evaluate(meds: list[str], allergies: list[AllergyFact] = ()) -> object:  # type: ignore[assignment]
    snapshot = PatientSnapshot(
        patient_id="p",
        tenant_id="t",
        age=50,
        sex="female",
        pregnant=False,
        medications=tuple(MedicationFact(f"m{i}", m) for i, m in enumerate(meds)),
        allergies=tuple(allergies),
    )
    return evaluate(snapshot, EvaluationRequest(), RULESET, KNOWLEDGE)


def test_an_unrecognised_medication_makes_the_evaluation_incomplete_and_is_named() -> None:
    result = _evaluate(["zzqx"])
    assert not result.complete  # type: ignore[attr-defined]
    (item,) = result.unresolved  # type: ignore[attr-defined]
    assert (item.item_id, item.kind, item.text, item.reason) == ("m0", "medication", "zzqx", "unrecognised")


def test_an_unknown_drug_allergen_makes_it_incomplete_an_environmental_one_does_not() -> None:
    drug = _evaluate(["warfarin"], [AllergyFact("a1", "zzqx-mycin", category="DRUG")])
    assert not drug.complete  # type: ignore[attr-defined]
    assert [u.item_id for u in drug.unresolved] == ["a1"]  # type: ignore[attr-defined]
    dust = _evaluate(["warfarin"], [AllergyFact("a1", "house dust", category="ENVIRONMENTAL")])
    assert not dust.unresolved  # type: ignore[attr-defined]


def test_a_display_string_meets_an_allergy_to_its_second_ingredient() -> None:
    result = _evaluate(
        ["Sulfamethoxazole 800 MG / Trimethoprim 160 MG Oral Tablet"], [AllergyFact("a1", "trimethoprim")]
    )
    assert any(a.kind.value == "DRUG_ALLERGY" for a in result.alerts)  # type: ignore[attr-defined]


# -- every name the rules and allergens use resolves ------------------------------------------------


def test_every_ingredient_named_by_classes_and_allergens_is_known() -> None:
    for allergen in VOCAB.allergens.values():
        for ingredient in allergen.match_ingredients:
            assert ingredient in VOCAB.ingredients, f"allergen {allergen.name}: {ingredient}"
        for cls in allergen.match_classes:
            assert cls in VOCAB.classes, f"allergen {allergen.name}: class {cls}"
    for alias, names in VOCAB.aliases.items():
        for ingredient in names:
            assert ingredient in VOCAB.ingredients, f"alias {alias}: {ingredient}"


def test_every_interaction_endpoint_and_rule_target_resolves() -> None:
    pairs = KNOWLEDGE.interactions.pairs
    assert len(pairs) > 50
    for pair in pairs:
        for kind, name in pair.keys:
            if kind == "ingredient":
                assert name in VOCAB.ingredients, f"{pair.id}: {name}"
            elif kind == "class":
                assert name in VOCAB.classes, f"{pair.id}: class {name}"
    rules = [compiled.rule for compiled in RULESET.rules]
    assert len(rules) > 50
    for rule in rules:
        for ingredient in rule.applies_to.ingredients:
            assert VOCAB.normalize_drug(ingredient).ingredients == (ingredient,), f"{rule.id}: {ingredient}"
        for cls in rule.applies_to.classes:
            assert cls in VOCAB.classes, f"{rule.id}: class {cls}"
        for food_group in rule.applies_to.food_groups:
            assert food_group in VOCAB.food_groups or food_group in VOCAB.foods, f"{rule.id}: {food_group}"


# -- ad-hoc cases -----------------------------------------------------------------------------------


def test_a_case_line_with_a_bad_field_is_refused_naming_it() -> None:
    with pytest.raises(CaseError, match=r"line 3: medications\[0\]\.code"):
        case_from_json({"id": 1, "medications": [{"code": "rxnorm:abc"}]}, line=3)
    with pytest.raises(CaseError, match="unknown field 'medication'"):
        case_from_json({"id": 1, "medication": []})
    with pytest.raises(CaseError, match=r"labs\.egfr"):
        case_from_json({"id": 1, "labs": {"egfr": "low"}})


def test_flags_and_case_lines_share_one_reader() -> None:
    case = flags_case(
        meds=["rxnorm:11289"],
        proposed=["ibuprofen"],
        allergies=["penicillin"],
        conditions=["icd10:J45.909"],
        labs={"egfr": 25.0},
        foods=[],
        age=70,
        sex="male",
        pregnant=None,
        tier="PREMIUM",
    )
    _, snapshot, request = case_from_json(case)
    assert snapshot.medications[0].coding == Coding("rxnorm", "11289")
    assert snapshot.conditions[0].code == "J45.909"
    assert request.proposed_medications[0].name == "ibuprofen"
