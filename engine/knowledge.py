"""Clinical knowledge: drug vocabulary, allergen groups, conditions and the interaction knowledge base.

Pure data and lookups. The store builds these records from `clinical.*` rows; `load_knowledge_files`
builds them from `rules/knowledge/` for `praneya rules lint|test` and for tests. Nothing here talks to
a database.
"""

from __future__ import annotations

import codecs
import csv
import difflib
import gzip
import hashlib
import io
import re
import sys
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, TextIO

import yaml

import engine._yaml as _yaml
from engine.allergy_knowledge import (
    ALLERGY_FILE,
    MEMBERSHIP_FILE,
    AllergyFileError,
    merge_allergy_document,
    parse_memberships,
)
from engine.concept_store import CodedDrug, ConceptRows, ConceptTable, NameIndex, NdcIndex, TrigramIndex
from engine.dose_limits import DOSE_FILE, DoseKnowledge, DoseKnowledgeError, load_dose_knowledge
from engine.hepatic import HEPATIC_FILE, HepaticKnowledge, HepaticKnowledgeError, load_hepatic_knowledge
from engine.identity import (
    FORM_WORDS,
    RELEASE_MODIFIERS,
    ROUTE_WORDS,
    Coding,
    ParsedDrug,
    coding_from_text,
    fold,
    parse_coding,
    parse_drug_text,
    strip_dose_text,
)
from engine.model import EvidenceLevel, Severity
from engine.recipe import (
    IGNORABLE_WORDS,
    UNIT_OR_FOOD_WORDS,
    food_key,
    is_quantity,
    parse_ingredient_line,
    singular_forms,
)
from engine.renal import RENAL_FILE, RenalKnowledge, RenalKnowledgeError, load_renal_knowledge

__all__ = [
    "CONCEPT_COLUMNS",
    "INTERACTION_FILES",
    "AliasRecord",
    "AllergenRecord",
    "CodedDrug",
    "ConceptRows",
    "ConditionRecord",
    "CrossReactivity",
    "CsvImportError",
    "DrugClassRecord",
    "DrugConcept",
    "FoodLine",
    "FoodRecord",
    "IngredientRecord",
    "InteractionKnowledge",
    "InteractionPair",
    "Knowledge",
    "KnowledgeFileError",
    "NdcIndex",
    "NormalizedAllergen",
    "NormalizedCondition",
    "NormalizedDrug",
    "NormalizedFood",
    "PairOverride",
    "Vocabulary",
    "clean_name",
    "evidence_from_source",
    "load_knowledge_files",
    "pair_id",
    "parse_concept_lines",
    "parse_concepts_tsv",
    "parse_interactions_csv",
    "read_concept_lines",
    "read_ndc_file",
    "severity_from_source",
]

PairKind = Literal["ingredient", "class", "food", "food_group"]
PAIR_KINDS: tuple[str, ...] = ("ingredient", "class", "food", "food_group")
EntityKey = tuple[str, str]  # (kind, normalised name)
# Classes whose id starts with this are beta-lactam R1 side-chain groups (rules/knowledge/allergy.yaml).
SIDE_CHAIN_PREFIX = "r1_"


# --------------------------------------------------------------------------------------------------
# Records (what the store builds from rows)


@dataclass(frozen=True, slots=True)
class IngredientRecord:
    name: str
    classes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class DrugClassRecord:
    """A rule class. `fda` are the FDA pharmacologic classes (pharm_classes.tsv ids, e.g.
    "epc:proton pump inhibitor") whose indexing justifies its membership, `outside_fda` the members
    FDA indexes otherwise, kept on another source written beside them in vocabulary.yaml;
    `praneya rules lint` checks each member against them. Neither is stored in the database (the
    check runs on the files)."""

    id: str
    name: str
    kind: Literal["CLINICAL"] = "CLINICAL"
    fda: tuple[str, ...] = ()
    outside_fda: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class AliasRecord:
    alias: str  # a brand, synonym or combination product
    ingredients: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class DrugConcept:
    """One coded drug concept: an RxNorm concept (IN, PIN, MIN, BN, SCD, SBD, GPCK, BPCK...) or an NDC.

    `ingredients` are the RXCUIs of the RxNorm ingredients (TTY IN) the concept contains: an IN
    lists itself, a PIN its ingredient, a brand or product every ingredient. An NDC names the
    product it packages in `product` and repeats that product's ingredients.
    """

    system: str  # "rxnorm" | "ndc"
    code: str
    tty: str
    name: str
    ingredients: tuple[str, ...]
    product: str | None = None
    strength: str | None = None
    dose_form: str | None = None
    unii: str | None = None
    active: bool = True  # False: retired from its source (kept for history, still resolvable)
    source: str = ""


CONCEPT_COLUMNS = (
    "system", "code", "tty", "name", "ingredients", "product", "strength", "dose_form", "unii", "active", "source",
)


_intern = sys.intern


def _shared_codes(cell: str, shared: dict[str, tuple[str, ...]]) -> tuple[str, ...]:
    """The comma-separated RXCUIs of a cell as a tuple, one tuple per distinct cell."""
    found = shared.get(cell)
    if found is None:
        found = shared[cell] = tuple(_intern(i) for i in cell.split(",") if i)
    return found


def parse_concepts_tsv(text: str, *, where: str = "concepts") -> list[DrugConcept]:
    """Reads the shipped concept table (rules/knowledge/rxnorm*.tsv): a header row with
    CONCEPT_COLUMNS, then one concept a line, tab-separated; `ingredients` comma-separated."""
    lines = iter(io.StringIO(text))
    _check_header(next(lines, ""), where)
    return list(parse_concept_lines(lines, where=where, first_line=2))


def _concept_cells(lines: Iterable[str], *, where: str, first_line: int) -> Iterator[list[str]]:
    """The checked cells of the concept table's data lines (no header), one line at a time."""
    for number, raw in enumerate(lines, start=first_line):
        line = raw.rstrip("\r\n")
        if not line:
            continue
        cells = line.split("\t")
        if len(cells) != len(CONCEPT_COLUMNS):
            raise KnowledgeFileError(f"{where}:{number}: {len(cells)} columns, expected {len(CONCEPT_COLUMNS)}")
        system, code, tty, name, _, _, _, _, _, active, _ = cells
        if system not in ("rxnorm", "ndc") or not code or not tty or not name:
            raise KnowledgeFileError(f"{where}:{number}: system, code, tty and name are required")
        if active not in ("1", "0"):
            raise KnowledgeFileError(f"{where}:{number}: active must be 1 or 0")
        yield cells


def parse_concept_lines(lines: Iterable[str], *, where: str = "concepts", first_line: int = 1) -> Iterator[DrugConcept]:
    """The concepts of the concept table's data lines (no header), one at a time: a caller that
    streams its lines (a COPY from the database) never holds the whole table as text."""
    shared: dict[str, tuple[str, ...]] = {}
    for cells in _concept_cells(lines, where=where, first_line=first_line):
        system, code, tty, name, ingredients, product, strength, dose_form, unii, active, source = cells
        # Few distinct values repeat over tens of thousands of rows (tty, dose forms, strengths,
        # source keys, ingredient lists): one shared string or tuple each, not one per row.
        yield DrugConcept(
            system=_intern(system),
            code=code,
            tty=_intern(tty),
            name=name,
            ingredients=_shared_codes(ingredients, shared),
            product=product or None,
            strength=_intern(strength) if strength else None,
            dose_form=_intern(dose_form) if dose_form else None,
            unii=unii or None,
            active=active == "1",
            source=_intern(source),
        )


def read_concept_lines(
    lines: Iterable[str], *, where: str = "concepts", first_line: int = 1, rows: ConceptRows | None = None
) -> ConceptRows:
    """The concept table's data lines (no header) straight into the columns a Vocabulary is built
    from, with the checks of parse_concept_lines and no DrugConcept made (what a worker loads)."""
    rows = rows if rows is not None else ConceptRows()
    for cells in _concept_cells(lines, where=where, first_line=first_line):
        rows.add_cells(cells)
    return rows


def _check_header(header: str, where: str) -> None:
    if tuple(header.rstrip("\r\n").split("\t")) != CONCEPT_COLUMNS:
        raise KnowledgeFileError(f"{where}: the first line must be the header {' '.join(CONCEPT_COLUMNS)}")


def _ndc_pairs(lines: Iterable[str], *, where: str) -> Iterator[tuple[str, str]]:
    lines = iter(lines)
    _check_header(next(lines, ""), where)
    for number, line in enumerate(lines, start=2):
        if not line:
            continue
        cells = line.split("\t")
        if len(cells) != len(CONCEPT_COLUMNS) or cells[0] != "ndc" or not cells[5]:
            raise KnowledgeFileError(f"{where}:{number}: expected an ndc row naming its product")
        yield cells[1], cells[5]


def parse_ndc_tsv(text: str, *, where: str = "ndc") -> Iterator[tuple[str, str]]:
    """The NDC rows of a concept table as (ndc, product RXCUI) pairs, without building a DrugConcept
    per row."""
    return _ndc_pairs(iter(text.splitlines()), where=where)


def _gzip_text_blocks(path: Path) -> Iterator[str]:
    """The text of a gzipped UTF-8 file, decompressed 64 kB at a time, each block ending after a
    newline (or at the end): the whole text is never held, and the blocks are small enough to be
    reused in place rather than mapped and unmapped one after another."""
    rest = b""
    with gzip.open(path, "rb") as handle:
        while data := handle.read(1 << 16):
            block = rest + data
            cut = block.rfind(b"\n") + 1
            rest = block[cut:]
            yield block[:cut].decode("utf-8")
    if rest:
        yield rest.decode("utf-8")


# What splitlines() splits a line on besides "\n".
_OTHER_LINE_BREAKS = ("\r", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029")


def _ndc_columns(text: str, width: int) -> tuple[list[int], list[int]] | None:
    """The NDCs and products of a block of lines when every line is a plain NDC row (ndc, then ten
    more cells, code and product digits), read by column at C speed; None for any other block.
    Every line starts with "ndc" and no other cell is "ndc", so every 11th cell starting with the
    first is exactly a line's first: each line has its eleven cells."""
    trailing = text.endswith("\n")
    rows = text.count("\n") + (not trailing)
    cells = text.replace("\n", "\t").split("\t")
    if trailing:
        cells.pop()
    ndcs, products = cells[1::width], cells[5::width]
    if (
        len(cells) == rows * width
        and text.startswith("ndc\t")
        and text.count("\nndc\t") == rows - 1
        and cells.count("ndc") == rows
        and cells[0::width].count("ndc") == rows
        and all(map(str.isdigit, ndcs))
        and all(map(str.isdigit, products))
        and not any(map(text.__contains__, _OTHER_LINE_BREAKS))
    ):
        return list(map(int, ndcs)), list(map(int, products))
    return None


def read_ndc_file(path: Path) -> NdcIndex:
    """The NDC index of a gzipped NDC table (rxnorm_ndc.tsv.gz), with parse_ndc_tsv's rows and
    checks, streamed into the index's arrays: no string or tuple per NDC is held. A block of plain
    NDC rows is read by column at C speed (_ndc_columns); any other block line by line, to skip or
    report exactly what parse_ndc_tsv would. The table is in NDC order, as build_rxnorm.py writes
    it; when it is not, it is read again and sorted."""
    where = str(path)
    width = len(CONCEPT_COLUMNS)

    def blocks() -> Iterator[tuple[list[int], list[int]]]:
        number = 0  # the lines read so far
        for text in _gzip_text_blocks(path):
            columns = _ndc_columns(text, width) if number else None  # the header is read line by line
            if columns is not None:
                yield columns
                number += text.count("\n") + (not text.endswith("\n"))
                continue
            ndcs: list[int] = []
            products: list[int] = []
            for line in text.splitlines():
                number += 1
                if number == 1:
                    _check_header(line, where)
                    continue
                if not line:
                    continue
                cells = line.split("\t")
                if len(cells) != width or cells[0] != "ndc" or not cells[5]:
                    raise KnowledgeFileError(f"{where}:{number}: expected an ndc row naming its product")
                if cells[1].isdigit() and cells[5].isdigit():
                    ndcs.append(int(cells[1]))
                    products.append(int(cells[5]))
            yield ndcs, products
        if number == 0:
            _check_header("", where)

    try:
        return NdcIndex.from_blocks(blocks())
    except KnowledgeFileError:
        raise
    except ValueError as exc:
        if "ascending" not in str(exc):
            raise KnowledgeFileError(f"{where}: {exc}") from None
    # Out of order (a table not written by build_rxnorm.py): read again and sorted by NdcIndex.
    lines = (line for text in _gzip_text_blocks(path) for line in text.splitlines())
    return NdcIndex(_ndc_pairs(lines, where=where))


@dataclass(frozen=True, slots=True)
class FoodRecord:
    name: str
    groups: tuple[str, ...] = ()


AllergyRelation = Literal["class", "side_chain", "cross"]


@dataclass(frozen=True, slots=True)
class CrossReactivity:
    """How an allergy reaches a drug it does not name: `class`, another member of a class whose
    members cross-react (lisinopril -> enalapril); `side_chain`, a beta-lactam with an identical R1
    side chain (ampicillin -> cefaclor); `cross`, a related class (penicillins -> carbapenems)."""

    target_kind: Literal["class", "ingredient"]
    target: str
    severity: Severity
    note: str = ""
    relation: AllergyRelation = "cross"


@dataclass(frozen=True, slots=True)
class AllergenRecord:
    name: str
    category: str  # allergen_category: DRUG, FOOD, ENVIRONMENTAL, ...
    match_ingredients: tuple[str, ...] = ()
    match_classes: tuple[str, ...] = ()
    match_foods: tuple[str, ...] = ()
    match_food_groups: tuple[str, ...] = ()
    cross: tuple[CrossReactivity, ...] = ()
    synonyms: tuple[str, ...] = ()  # "pcn", "penicillins", "penicillin allergy"
    # A class whose members cross-react: an allergy to one member meets the others at this grade
    # (before the patient's reaction adjusts it). None: a reaction to one member says nothing of
    # the others (the beta-lactam umbrella, the cephalosporin generations).
    member_grade: Severity | None = None
    note: str = ""  # what a clinician should know about the group (shown with its alerts)


@dataclass(frozen=True, slots=True)
class ConditionRecord:
    id: str
    synonyms: tuple[str, ...] = ()
    icd10: tuple[str, ...] = ()  # ICD-10-CM codes or categories; a code matches them and its children
    snomed: tuple[str, ...] = ()  # SNOMED CT concept ids, matched exactly (no hierarchy offline)


@dataclass(frozen=True, slots=True)
class InteractionPair:
    id: str
    a_kind: str  # ingredient | class | food | food_group
    a: str
    b_kind: str
    b: str
    severity: Severity
    source_severity: str  # the value as the source graded it ("1", "X", "major")
    interaction_type: str
    evidence: EvidenceLevel
    description: str
    recommendation: str
    avoid_combination: bool
    source: str
    # An endpoint name the vocabulary did not resolve (imported with --allow-unresolved): kept for
    # review, never matched, since its "ingredient" is only the text the source wrote.
    unresolved: bool = False

    @property
    def keys(self) -> tuple[EntityKey, EntityKey]:
        return (self.a_kind, self.a), (self.b_kind, self.b)


@dataclass(frozen=True, slots=True)
class PairOverride:
    """A tenant's local decision about one pair: re-grade it, or switch it off."""

    pair_id: str
    severity: Severity | None = None
    disabled: bool = False


# --------------------------------------------------------------------------------------------------
# Severity and evidence on source scales

# First Databank MedKnowledge drug-drug interaction module, severity levels: 1 = contraindicated drug
# combination, 2 = severe interaction, 3 = moderate interaction, 9 = undetermined severity.
# Lexicomp (Lexi-Interact) risk rating: X = avoid combination, D = consider therapy modification,
# C = monitor therapy, B = no action needed, A = no known interaction.
_SEVERITY_SCALES: dict[str, Severity] = {
    # FDB
    "1": Severity.CRITICAL,
    "2": Severity.HIGH,
    "3": Severity.MODERATE,
    "9": Severity.INFO,
    # Lexicomp
    "x": Severity.CRITICAL,
    "d": Severity.HIGH,
    "c": Severity.MODERATE,
    "b": Severity.LOW,
    "a": Severity.INFO,
    # words used by Micromedex, DrugBank and most monographs
    "contraindicated": Severity.CRITICAL,
    "major": Severity.HIGH,
    "severe": Severity.HIGH,
    "moderate": Severity.MODERATE,
    "minor": Severity.LOW,
    "unknown": Severity.INFO,
    # ours
    **{s.name.lower(): s for s in Severity},
}


def severity_from_source(value: str) -> Severity:
    """Map a severity on any supported source scale onto ours; refuse what we cannot place."""
    key = " ".join(str(value).split()).lower()
    try:
        return _SEVERITY_SCALES[key]
    except KeyError:
        raise ValueError(
            f"severity {value!r} is not on a known scale "
            "(FDB 1/2/3/9, Lexicomp X/D/C/B/A, contraindicated/major/moderate/minor/unknown, "
            "or INFO/LOW/MODERATE/HIGH/CRITICAL)"
        ) from None


_EVIDENCE_WORDS: dict[str, EvidenceLevel] = {
    **{e.name.lower(): e for e in EvidenceLevel},
    "": EvidenceLevel.UNKNOWN,
    # Micromedex documentation ratings
    "excellent": EvidenceLevel.CLINICAL_TRIAL,
    "good": EvidenceLevel.OBSERVATIONAL,
    "fair": EvidenceLevel.CASE_REPORTS,
    "poor": EvidenceLevel.EXPERT_OPINION,
    "theoretical": EvidenceLevel.EXPERT_OPINION,
}


def evidence_from_source(value: str) -> EvidenceLevel:
    key = "_".join(str(value).replace("-", " ").split()).lower()
    try:
        return _EVIDENCE_WORDS[key]
    except KeyError:
        raise ValueError(f"evidence level {value!r} is not known") from None


# --------------------------------------------------------------------------------------------------
# Names

_SPACES = re.compile(r"\s+")
_ALLERGY_WORDS = re.compile(r"^(?:allergic to|allergy to)\s+|\s+(?:allergy|allergies|intolerance)$")


def clean_name(text: str) -> str:
    """Lower case, one space between words, no surrounding punctuation."""
    return _SPACES.sub(" ", str(text).replace("\u00a0", " ")).strip(" \t\n\r.,;:").lower()


def _trigrams(text: str) -> set[str]:
    padded = f"  {text} "
    return {padded[i : i + 3] for i in range(len(padded) - 2)}


def _singular(word: str) -> str | None:
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    if word.endswith("s") and not word.endswith("ss") and len(word) > 3:
        return word[:-1]
    return None


@dataclass(frozen=True, slots=True)
class NormalizedDrug:
    ingredients: tuple[str, ...]
    classes: tuple[str, ...]
    recognised: bool  # status == "resolved": every ingredient known, nothing ambiguous
    unrecognised: tuple[str, ...] = ()  # the parts that matched nothing (or several things)
    status: str = "resolved"  # resolved | unrecognised | ambiguous | partial | mismatch
    suggestions: tuple[str, ...] = ()  # "did you mean" names for unrecognised parts, never applied
    route: str | None = None
    dose_form: str | None = None
    strength: str | None = None
    code: str | None = None  # the concept it was identified by ("rxnorm:855288"), when coded
    notes: tuple[str, ...] = ()  # what a caller should know: unknown code, code and text disagree


@dataclass(frozen=True, slots=True)
class NormalizedFood:
    name: str
    groups: tuple[str, ...]
    recognised: bool


@dataclass(frozen=True, slots=True)
class FoodLine:
    """A food as written, or a recipe's ingredient line, read as the foods it names.

    `status` is resolved (every word naming the food is understood), partial (some foods found,
    and words that are neither a known food nor a quantity, unit or preparation word), or
    unrecognised (no known food). Anything but resolved was not fully screened. Words in
    parentheses or after the first comma are notes: a known food there is screened too ("broth
    (chicken or vegetable)"); an unknown word there is commentary and ignored.
    """

    text: str  # the line, folded
    foods: tuple[NormalizedFood, ...]
    status: str  # resolved | partial | unrecognised
    unrecognised: tuple[str, ...] = ()  # the words that matched nothing
    suggestions: tuple[str, ...] = ()  # "did you mean" food names, never applied
    words: tuple[str, ...] = ()  # every word of the line, for matching an allergen's own name


@dataclass(frozen=True, slots=True)
class NormalizedAllergen:
    name: str
    category: str | None
    ingredients: tuple[str, ...] = ()
    classes: tuple[str, ...] = ()
    foods: tuple[str, ...] = ()
    food_groups: tuple[str, ...] = ()
    cross: tuple[CrossReactivity, ...] = ()
    recognised: bool = True
    # Names that also match inside a longer food name or ingredient line, word for word: an allergy
    # to one food ("walnut", "coconut") covers "walnut oil" and "coconut milk". Only for allergies
    # named by a food or not recognised at all; an allergen group ("milk") matches by its groups,
    # so that "coconut milk" is not called dairy.
    food_phrases: tuple[str, ...] = ()
    status: str = "resolved"  # resolved | unrecognised | ambiguous | partial
    suggestions: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    note: str = ""  # the allergen group's note (e.g. why non-antibiotic sulfonamides are not matched)


@dataclass(frozen=True, slots=True)
class NormalizedCondition:
    id: str
    recognised: bool
    # Every condition id the item means: one code can belong to two groups (I11.0, hypertensive heart
    # disease with heart failure, is both hypertension and heart failure). `id` is the first of them.
    ids: tuple[str, ...] = ()


class Vocabulary:
    """Maps names as people write them to the ingredients, classes, foods and conditions we reason on."""

    def __init__(
        self,
        *,
        ingredients: Iterable[IngredientRecord] = (),
        classes: Iterable[DrugClassRecord] = (),
        aliases: Iterable[AliasRecord] = (),
        foods: Iterable[FoodRecord] = (),
        allergens: Iterable[AllergenRecord] = (),
        conditions: Iterable[ConditionRecord] = (),
        salt_words: Iterable[str] = (),
        concepts: Iterable[DrugConcept] | ConceptRows = (),
        ndc: NdcIndex | None = None,
        version: str = "",
        pharm_classes: Mapping[str, tuple[str, ...]] | None = None,
    ) -> None:
        self.ndc = ndc if ndc is not None else NdcIndex()
        # FDA pharmacologic classes (EPC, MoA, CS, PE) of each ingredient, as class ids such as
        # "epc:penicillin-class antibacterial" (pharm_classes.tsv). A namespace of its own, beside the
        # rule classes: informational, and what allergy.yaml's classes are read from at build time.
        self.pharm_classes: Mapping[str, tuple[str, ...]] = pharm_classes or {}
        self.version = version  # the vocabulary release an evaluation names (RxNorm release + curated digest)
        self.classes: dict[str, DrugClassRecord] = {c.id: c for c in classes}
        self.ingredients: dict[str, IngredientRecord] = {clean_name(i.name): i for i in ingredients}
        self.curated_ingredients: tuple[IngredientRecord, ...] = tuple(self.ingredients.values())
        self.aliases: dict[str, tuple[str, ...]] = {
            clean_name(a.alias): tuple(clean_name(i) for i in a.ingredients) for a in aliases
        }
        self.foods: dict[str, FoodRecord] = {clean_name(f.name): f for f in foods}
        self.food_groups: frozenset[str] = frozenset(g for f in self.foods.values() for g in f.groups)
        # Food names (and group ids) as word sequences -> the name they are known by.
        self._food_index: dict[str, str] = {food_key(g.replace("_", " ")): g for g in self.food_groups}
        self._food_index.update({food_key(name): name for name in self.foods})
        self._food_index.pop("", None)
        self._food_max_words = max((len(k.split()) for k in self._food_index), default=0)
        self._food_suggestable = tuple(sorted(self._food_index))
        self.allergens: dict[str, AllergenRecord] = {clean_name(a.name): a for a in allergens}
        self._allergen_by_name: dict[str, AllergenRecord] = {}
        for allergen in self.allergens.values():
            for synonym in allergen.synonyms:
                self._allergen_by_name[clean_name(synonym)] = allergen
        # an allergen's own name wins over another allergen's synonym
        self._allergen_by_name.update(self.allergens)
        self.conditions: dict[str, ConditionRecord] = {c.id: c for c in conditions}
        self.salt_words: frozenset[str] = frozenset(clean_name(w) for w in salt_words)
        self._class_by_name = {clean_name(c.name): c.id for c in self.classes.values()}
        self._class_by_name.update({cid: cid for cid in self.classes})
        self._condition_by_name: dict[str, str] = {}
        self._condition_by_icd: dict[str, set[str]] = defaultdict(set)
        self._condition_by_snomed: dict[str, set[str]] = defaultdict(set)
        for cond in self.conditions.values():
            self._condition_by_name[clean_name(cond.id.replace("_", " "))] = cond.id
            self._condition_by_name[cond.id] = cond.id
            for syn in cond.synonyms:
                self._condition_by_name[clean_name(syn)] = cond.id
            for code in cond.icd10:
                self._condition_by_icd[code.upper().replace(".", "")].add(cond.id)
            for code in cond.snomed:
                self._condition_by_snomed[code].add(cond.id)
        # Membership is what the vocabulary lists, nothing inferred: the content states it explicitly
        # per ingredient, and `praneya rules lint` cross-checks it against FDA's pharmacologic classes
        # (each class's `fda` and `outside_fda`).
        self._ingredient_classes: dict[str, tuple[str, ...]] = {
            name: tuple(sorted(set(rec.classes))) for name, rec in self.ingredients.items()
        }
        self._drug_cache: dict[tuple[str, Coding | None], NormalizedDrug] = {}
        self._build_drug_index(concepts)
        self._build_allergy_index()

    # -- drugs ---------------------------------------------------------------------------------

    def _build_drug_index(self, concepts: Iterable[DrugConcept] | ConceptRows) -> None:
        """Every name a drug is known by (folded) -> the ingredient set it denotes. A name that two
        sources give different ingredient sets is ambiguous: kept, and never resolved."""
        if isinstance(concepts, ConceptRows):
            rows = concepts
        else:
            rows = ConceptRows()
            for c in concepts:
                rows.add(c.system, c.code, c.tty, c.name, ",".join(c.ingredients), c.strength, c.dose_form, c.active)
        self.ingredient_codes: dict[str, str] = {}  # ingredient name -> RXCUI
        in_names: dict[str, str] = {}  # RXCUI of an IN -> our ingredient name
        for code, name, active in rows.ingredients:
            in_names[code] = name
            if active or name not in self.ingredient_codes:
                self.ingredient_codes[name] = code
            if name not in self.ingredients:
                self.ingredients[name] = IngredientRecord(name)
                self._ingredient_classes[name] = ()
        # The ingredient names of each distinct RXCUI list (None when one of them is not an IN we
        # know), one shared tuple per distinct set.
        shared: dict[tuple[str, ...], tuple[str, ...]] = {}
        resolved: list[tuple[str, ...] | None] = []
        for rxcuis in rows.ingredient_rxcuis():
            found = self._concept_ingredients(rxcuis, in_names)
            resolved.append(shared.setdefault(found, found) if found is not None else None)
        # Only what a lookup needs is kept: the names go into the name index.
        self.concepts: ConceptTable = ConceptTable(rows, resolved)  # RXCUI -> what the code denotes
        # Folded name -> its one ingredient set; a name given a second, different set is ambiguous
        # (its sets collected apart: a set per name for the few, not for the tens of thousands).
        names: dict[str, tuple[str, ...] | None] = {}
        clashes: dict[str, set[tuple[str, ...]]] = {}

        def add(name: str, found: tuple[str, ...]) -> None:
            held = names.get(name, found)
            if held == found and name not in clashes:
                names[name] = shared.setdefault(found, found)
            else:
                clashes.setdefault(name, {held} if held is not None else set()).add(found)
                names[name] = None

        for name in self.ingredients:
            add(fold(name), (name,))
        for alias, ingredients in self.aliases.items():
            add(fold(alias), tuple(sorted(ingredients)))
        for name, row in rows.names():
            found = resolved[rows.sets[row]]
            if found is not None:
                add(name, found)
        self._names: NameIndex = NameIndex(names)
        self.ambiguous_names: dict[str, tuple[tuple[str, ...], ...]] = {
            name: tuple(sorted(sets)) for name, sets in clashes.items()
        }
        # "Did you mean": ingredient and brand names, and aliases (not whole product strings).
        suggestable = set(self.ingredients) | {fold(a) for a in self.aliases}
        suggestable.update(rows.suggestable)
        self._suggestable = tuple(sorted(suggestable))
        self._trigram_index = TrigramIndex(self._suggestable, _trigrams)

    @staticmethod
    def _concept_ingredients(rxcuis: Sequence[str], in_names: Mapping[str, str]) -> tuple[str, ...] | None:
        names = [in_names.get(code) for code in rxcuis]
        if not names or any(n is None for n in names):
            return None
        return tuple(sorted({n for n in names if n is not None}))

    def classes_of(self, ingredient: str) -> tuple[str, ...]:
        return self._ingredient_classes.get(ingredient, ())

    def pharm_classes_of(self, ingredient: str) -> tuple[str, ...]:
        """The ingredient's FDA pharmacologic classes ("epc:...", "moa:...", "cs:...", "pe:...")."""
        return self.pharm_classes.get(ingredient, ())

    def _lookup(self, text: str) -> tuple[str, ...] | None:
        """A known name's ingredients (None when unknown or ambiguous)."""
        return self._names.get(text)

    def _known(self, text: str) -> bool:
        return text in self._names

    def _is_ingredient(self, text: str) -> bool:
        return text in self.ingredients

    def _resolve_name(self, name: str) -> tuple[str, tuple[str, ...] | None, str | None]:
        """One product or ingredient name -> (status, ingredients, route). Each step removes words
        only when what remains is a known name; none guesses by prefix or by the longest match."""
        name = name.strip(" -,.;:")
        if not name:
            return "unrecognised", None, None
        if self._known(name):
            found = self._lookup(name)
            return ("resolved", found, None) if found is not None else ("ambiguous", None, None)
        words = [w for w in re.split(r"[\s,]+", name) if w]
        route = None
        # Trailing dose-form and route words ("warfarin sodium tablets, usp", "timolol ophthalmic").
        while len(words) > 1 and words[-1] in FORM_WORDS:
            if words[-1] in ROUTE_WORDS and route is None:
                route = words[-1]
            words.pop()
            candidate = " ".join(words)
            if self._known(candidate):
                found = self._lookup(candidate)
                return ("resolved", found, route) if found is not None else ("ambiguous", None, route)
        # Release and strength modifiers that never change the ingredients ("Toprol XL", "Bactrim DS").
        if len(words) > 1 and words[-1] in RELEASE_MODIFIERS:
            candidate = " ".join(words[:-1])
            if self._known(candidate):
                found = self._lookup(candidate)
                return ("resolved", found, route) if found is not None else ("ambiguous", None, route)
        # Salts and esters, only to a known ingredient ("penicillin v potassium" -> "penicillin v"),
        # never to what is left when only salt words remain ("sodium chloride" is its own ingredient).
        stripped = [w for w in words if w not in self.salt_words]
        if stripped and len(stripped) < len(words):
            candidate = " ".join(stripped)
            if self._is_ingredient(candidate):
                found = self._lookup(candidate)
                return ("resolved", found, route) if found is not None else ("ambiguous", None, route)
        return "unrecognised", None, route

    def _split_resolved(self, name: str) -> tuple[str, ...] | None:
        """`hydrocodone-acetaminophen`, `amoxicillin and clavulanate`, `a, b`: a combination only when
        every piece is a known name on its own, since hyphens and "and" also occur inside names."""
        for separator in (r"\s*,\s*(?:and\s+)?|\s+and\s+", r"\s*-\s*"):
            pieces = [p for p in re.split(separator, name) if p]
            if len(pieces) < 2:
                continue
            found: list[str] = []
            for piece in pieces:
                status, ingredients, _ = self._resolve_name(piece)
                if status != "resolved" or ingredients is None:
                    break
                found.extend(ingredients)
            else:
                return tuple(found)
        return None

    def _known_leading_names(self, text: str) -> tuple[str, ...]:
        """"Advil PM" -> ("advil",): a known name at the start, offered as a suggestion and never
        applied ("Pfizerpen VK" is penicillin V, not the penicillin G that "Pfizerpen" is)."""
        words = text.split(" ")
        for cut in range(len(words) - 1, 0, -1):
            if self._lookup(" ".join(words[:cut])) is not None:
                return (" ".join(words[:cut]),)
        return ()

    def suggest(self, text: str, limit: int = 3) -> tuple[str, ...]:
        """Close names for a misspelling ("warfrin" -> "warfarin"), offered, never applied."""
        text = fold(text)
        if len(text) < 4:
            return ()
        # Candidates share trigrams with the text (an index, so an unknown name costs microseconds,
        # not a scan of every name); the closest few by similarity ratio are offered.
        shared: Counter[int] = Counter()
        for gram in _trigrams(text):
            shared.update(self._trigram_index.get(gram))
        pool = [self._suggestable[i] for i, _ in shared.most_common(40)]
        scored = []
        matcher = difflib.SequenceMatcher(b=text)
        for name in pool:
            matcher.set_seq1(name)
            if matcher.real_quick_ratio() >= 0.8 and matcher.quick_ratio() >= 0.8 and (r := matcher.ratio()) >= 0.8:
                scored.append((r, name))
        scored.sort(key=lambda item: (-item[0], item[1]))
        # Only names about as close as the closest: "warfrin" offers warfarin, not also "afrin".
        return tuple(name for r, name in scored[:limit] if r >= scored[0][0] - 0.05)

    def normalize_drug(self, name: str, coding: Coding | None = None) -> NormalizedDrug:
        key = (name, coding)
        cached = self._drug_cache.get(key)
        if cached is not None:
            return cached
        result = self._identify(name, coding)
        if len(self._drug_cache) < 50_000:  # bounded: names come from patients' records
            self._drug_cache[key] = result
        return result

    def _identify(self, name: str, coding: Coding | None) -> NormalizedDrug:
        by_text = self._normalize_drug(name) if fold(name) else None
        if coding is None:
            return by_text if by_text is not None else self._unrecognised(("",), ())
        rxcui = self.ndc.product(coding.code) if coding.system == "ndc" else coding.code
        concept = self.concepts.get(rxcui) if rxcui is not None and coding.system in ("rxnorm", "ndc") else None
        ingredients = concept.ingredients if concept is not None else None
        if concept is None or ingredients is None:
            note = f"unknown code {coding}" if concept is None else f"code {coding} has no known ingredients"
            if by_text is None:
                return replace(self._unrecognised((str(coding),), ()), notes=(note,))
            return replace(by_text, notes=(*by_text.notes, f"{note}; identified by its text"))
        notes: list[str] = []
        if not concept.active:
            notes.append(f"code {coding} is retired from RxNorm")
        status = "resolved"
        if by_text is not None and by_text.recognised and set(by_text.ingredients) != set(ingredients):
            # The code wins, and the disagreement is reported: the text the clinician sees names
            # other drugs than were screened, so the answer cannot be complete.
            status = "mismatch"
            notes.append(
                f"code {coding} ({', '.join(ingredients)}) disagrees with the text ({', '.join(by_text.ingredients)});"
                " the code was used"
            )
        drug = self._drug(ingredients, ())
        return replace(
            drug,
            status=status,
            recognised=status == "resolved",
            unrecognised=(name,) if status == "mismatch" else (),
            route=by_text.route if by_text is not None else None,
            dose_form=concept.dose_form or (by_text.dose_form if by_text is not None else None),
            strength=concept.strength,
            code=f"rxnorm:{rxcui}",
            notes=tuple(notes),
        )

    def _unrecognised(self, parts: tuple[str, ...], suggestions: tuple[str, ...]) -> NormalizedDrug:
        return NormalizedDrug(
            (), (), recognised=False, unrecognised=parts, status="unrecognised", suggestions=suggestions
        )

    def _normalize_drug(self, name: str) -> NormalizedDrug:
        parsed = parse_drug_text(name)
        if not parsed.text:
            return self._unrecognised(("",), ())
        # The whole string first: an RxNorm display name, a brand with a number in it ("D.H.E. 45").
        status, found, route = self._resolve_name(parsed.text)
        if status != "unrecognised":
            return self._result(name, parsed, [(parsed.text, status, found)], route or parsed.route)
        # A known name followed by dose text, where the name itself holds a number ("D.H.E. 45 1 mg"):
        # the longest exactly known head wins; nothing shorter than a whole known name is taken.
        words = parsed.text.split(" ")
        for cut in range(len(words) - 1, 1, -1):
            if words[cut][:1].isdigit():
                head = " ".join(words[:cut])
                if self._known(head) and any(ch.isdigit() for ch in head):
                    status, found, route = self._resolve_name(head)
                    return self._result(name, parsed, [(head, status, found)], route or parsed.route)
        parts: list[tuple[str, str, tuple[str, ...] | None]] = []
        for component in parsed.components:
            status, found, route = self._resolve_name(component)
            if status == "unrecognised":
                combined = self._split_resolved(component)
                if combined is not None:
                    status, found = "resolved", combined
            parts.append((component, status, found))
            parsed_route = route
            if parsed_route and not parsed.route:
                parsed = replace(parsed, route=parsed_route)
        if parsed.brand and any(s != "resolved" for _, s, _ in parts):
            # "... [Bactrim]": the brand names the same product; used only when the text itself did
            # not resolve, and only when the brand is known.
            status, found, _ = self._resolve_name(parsed.brand)
            if status == "resolved":
                parts = [(parsed.brand, status, found)]
        if not parts:
            # Only punctuation or dose text: nothing to screen, and said so.
            return self._unrecognised((parsed.text,), ())
        return self._result(name, parsed, parts, parsed.route)

    def _result(
        self,
        name: str,
        parsed: ParsedDrug,
        parts: Sequence[tuple[str, str, tuple[str, ...] | None]],
        route: str | None,
    ) -> NormalizedDrug:
        ingredients: list[str] = []
        unknown: list[str] = []
        suggestions: list[str] = []
        statuses = {status for _, status, _ in parts}
        for text, status, found in parts:
            if status == "resolved" and found is not None:
                ingredients.extend(found)
                continue
            unknown.append(text)
            if status == "unrecognised":
                # Kept as a literal name too, so an allergy recorded under the same unknown name
                # still meets it; the answer is incomplete either way.
                ingredients.append(text)
                offered = (*self._known_leading_names(text), *self.suggest(text))
                suggestions.extend(s for s in offered if s not in suggestions)
        if not unknown:
            status = "resolved"
        elif "ambiguous" in statuses:
            status = "ambiguous"
        elif "resolved" in statuses:
            status = "partial"
        else:
            status = "unrecognised"
        drug = self._drug(tuple(ingredients), tuple(unknown))
        return replace(
            drug,
            status=status,
            suggestions=tuple(suggestions),
            route=route,
            dose_form=parsed.dose_form,
        )

    def _drug(self, ingredients: Sequence[str], unknown: tuple[str, ...]) -> NormalizedDrug:
        unique = tuple(dict.fromkeys(ingredients))
        classes = sorted({c for i in unique for c in self.classes_of(i)})
        return NormalizedDrug(
            ingredients=unique, classes=tuple(classes), recognised=not unknown, unrecognised=unknown
        )

    def class_id(self, name: str) -> str | None:
        text = clean_name(name)
        return self._class_by_name.get(text) or self._class_by_name.get(_singular(text) or "")

    # -- foods ---------------------------------------------------------------------------------

    def _food_groups(self, name: str) -> tuple[str, ...] | None:
        if name in self.foods:
            groups = set(self.foods[name].groups)
            if name in self.food_groups:
                groups.add(name)
            return tuple(sorted(groups))
        if name in self.food_groups:
            return (name,)
        return None

    def _food_at(self, words: Sequence[str], start: int) -> tuple[str, int] | None:
        """The longest known food starting at `start` (the last word may be plural): (name, end)."""
        for end in range(min(len(words), start + self._food_max_words), start, -1):
            phrase = words[start:end]
            head = " ".join(phrase[:-1])
            for last in (phrase[-1], *singular_forms(phrase[-1])):
                key = f"{head} {last}" if head else last
                name = self._food_index.get(key)
                if name is not None:
                    return name, end
        return None

    def _foods_in(self, words: Sequence[str]) -> tuple[list[str], list[str]]:
        """Known foods in a run of words, longest match first, and the words that are neither a
        food nor a quantity, unit, preparation or descriptor word."""
        found: list[str] = []
        unknown: list[str] = []
        i = 0
        after_food = False
        while i < len(words):
            word = words[i]
            if word in UNIT_OR_FOOD_WORDS and (after_food or self._food_at(words, i + 1) is not None):
                i += 1  # "3 cloves garlic", "2 garlic cloves": a unit here, not the spice
                after_food = False
                continue
            after_food = False
            match = self._food_at(words, i)
            if match is not None:
                found.append(match[0])
                i = match[1]
                after_food = True
                continue
            if not (is_quantity(word) or word in IGNORABLE_WORDS or len(word) == 1):
                unknown.append(word)
            i += 1
        return found, unknown

    def food_line(self, text: str) -> FoodLine:
        """Read a food or a recipe ingredient line ("200 g aged cheddar, grated") as the foods it names."""
        line = parse_ingredient_line(text)
        names, unknown = self._foods_in(line.primary)
        notes = line.notes
        if not names and notes:
            # "4 skinless, boneless chicken breasts": the food is after the first comma.
            more, more_unknown = self._foods_in(notes[-1])
            if more:
                names, unknown = more, unknown + more_unknown
                notes = notes[:-1]
        for note in notes:
            # A note's food counts when it carries something screened ("(chicken or vegetable
            # broth)" adds nothing; "(or walnuts)" adds a tree nut).
            names.extend(n for n in self._foods_in(note)[0] if self._food_groups(n))
        foods = tuple(
            NormalizedFood(name, self._food_groups(name) or (), True) for name in dict.fromkeys(names)
        )
        status = "unrecognised" if not foods else "partial" if unknown else "resolved"
        suggestions: tuple[str, ...] = ()
        if status != "resolved":
            close = [difflib.get_close_matches(w, self._food_suggestable, n=2, cutoff=0.8) for w in unknown]
            suggestions = tuple(dict.fromkeys(m for matches in close for m in matches))[:3]
            suggestions = tuple(self._food_index[s] for s in suggestions)
        words = line.primary + tuple(w for note in line.notes for w in note)
        return FoodLine(
            " ".join(line.primary) or line.text, foods, status, tuple(dict.fromkeys(unknown)), suggestions, words
        )

    def normalize_food(self, name: str) -> NormalizedFood:
        """One food as written: its first known food (recognised only when the whole text is
        understood), or the text itself, unrecognised."""
        line = self.food_line(name)
        if line.foods:
            first = line.foods[0]
            return NormalizedFood(first.name, first.groups, line.status == "resolved")
        return NormalizedFood(clean_name(line.text), (), False)

    # -- allergens -----------------------------------------------------------------------------

    def _build_allergy_index(self) -> None:
        members: dict[str, set[str]] = defaultdict(set)
        for ingredient, classes in self._ingredient_classes.items():
            for cls in classes:
                members[cls].add(ingredient)
        self.class_members: dict[str, frozenset[str]] = {c: frozenset(v) for c, v in members.items()}
        self.side_chain_classes: frozenset[str] = frozenset(c for c in self.classes if c.startswith(SIDE_CHAIN_PREFIX))
        by_class: dict[str, list[AllergenRecord]] = defaultdict(list)
        for allergen in self.allergens.values():
            if allergen.category == "DRUG":
                for cls in allergen.match_classes:
                    by_class[cls].append(allergen)
        self._allergens_by_class: dict[str, tuple[AllergenRecord, ...]] = {c: tuple(v) for c, v in by_class.items()}

    def _related(self, allergen: NormalizedAllergen) -> NormalizedAllergen:
        """What else an allergy reaches besides the drugs it names: the other members of every
        cross-reacting class its drugs belong to, beta-lactams sharing their R1 side chain, and the
        related classes the groups list. The allergy's own classes and ingredients stay direct."""
        if not allergen.ingredients and not allergen.classes:
            return allergen
        direct = set(allergen.classes)
        members = set(allergen.ingredients)
        for cls in allergen.classes:
            members.update(self.class_members.get(cls, ()))
        reached = sorted({c for i in members for c in self.classes_of(i)} | direct)
        related: list[CrossReactivity] = list(allergen.cross)
        note = allergen.note
        for cls in reached:
            for record in self._allergens_by_class.get(cls, ()):
                if record.member_grade is not None and cls not in direct:
                    related.append(CrossReactivity("class", cls, record.member_grade, record.note, "class"))
                related.extend(record.cross)
                note = note or record.note
        for group in reached:
            if group in self.side_chain_classes:
                side = self.classes[group].name
                related.append(
                    CrossReactivity(
                        "class",
                        group,
                        Severity.MODERATE,
                        f"Shares its beta-lactam {side[0].lower()}{side[1:]}: beta-lactams with identical R1 side"
                        " chains cross-react more often than the classes as a whole (Zagursky 2018; AAAAI 2022)."
                        " Choose a beta-lactam with a dissimilar side chain, or test first.",
                        "side_chain",
                    )
                )
        unique: dict[tuple[str, str, str], CrossReactivity] = {}
        for item in related:
            unique.setdefault((item.target_kind, item.target, item.relation), item)
        return replace(allergen, cross=tuple(unique.values()), note=note)

    def normalize_allergen(
        self, name: str, category: str | None = None, coding: Coding | None = None
    ) -> NormalizedAllergen:
        allergen = self._normalize_allergen(name, category, coding)
        return self._related(allergen) if allergen.category in (None, "DRUG", "OTHER") else allergen

    def _normalize_allergen(
        self, name: str, category: str | None = None, coding: Coding | None = None
    ) -> NormalizedAllergen:
        category = category.upper() if category else None
        notes: tuple[str, ...] = ()
        if coding is not None and coding.system in ("rxnorm", "ndc"):
            coded = self.normalize_drug("", coding)
            if coded.recognised:
                return NormalizedAllergen(
                    name=" / ".join(coded.ingredients),
                    category=category or "DRUG",
                    ingredients=coded.ingredients,
                    notes=coded.notes,
                )
            notes = (f"unknown code {coding}; identified by its text",)
        elif coding is not None:
            notes = (f"{coding.system} codes are not in the allergen vocabulary; identified by its text",)
        whole = clean_name(fold(name))
        text = _ALLERGY_WORDS.sub("", whole)
        for candidate in (whole, text, _singular(text)):
            if candidate and candidate in self._allergen_by_name:
                rec = self._allergen_by_name[candidate]
                return NormalizedAllergen(
                    name=rec.name,
                    category=category or rec.category,
                    ingredients=rec.match_ingredients,
                    classes=rec.match_classes,
                    foods=rec.match_foods,
                    food_groups=rec.match_food_groups,
                    cross=rec.cross,
                    notes=notes,
                    note=rec.note,
                )
        drug: NormalizedDrug | None = None
        if category not in ("FOOD", "ENVIRONMENTAL"):
            cls = self.class_id(text)
            if cls is not None:
                return NormalizedAllergen(name=cls, category=category or "DRUG", classes=(cls,), notes=notes)
            drug = self.normalize_drug(text)
            if drug.recognised:
                return NormalizedAllergen(
                    name=" / ".join(drug.ingredients),
                    category=category or "DRUG",
                    ingredients=drug.ingredients,
                    notes=notes,
                )
        if category != "DRUG":
            food = self.normalize_food(text)
            if food.recognised:
                return NormalizedAllergen(
                    name=food.name,
                    category=category or "FOOD",
                    foods=(food.name,),
                    food_groups=(food.name,) if food.name in self.food_groups else (),
                    notes=notes,
                    food_phrases=(food.name,),
                )
        # Unknown allergen: keep it, matching its literal name against drugs and foods, so that an
        # allergy to something we have never heard of still meets a medication of the same name.
        cleaned = strip_dose_text(text)[0] or text
        status = "unrecognised"
        ingredients: tuple[str, ...] = (cleaned,)
        if drug is not None and drug.status in ("partial", "ambiguous"):
            # "Bactrim XYZ": the known part is screened as well, the rest reported.
            status = drug.status
            ingredients = tuple(dict.fromkeys((*drug.ingredients, cleaned)))
        return NormalizedAllergen(
            name=cleaned,
            category=category,
            ingredients=ingredients,
            foods=(cleaned,),
            recognised=False,
            status=status,
            food_phrases=(cleaned,),
            suggestions=drug.suggestions if drug is not None else self.suggest(text),
            notes=notes,
        )

    # -- conditions ----------------------------------------------------------------------------

    def condition_ids_of_code(self, coding: Coding) -> tuple[str, ...]:
        """The condition ids a SNOMED CT or ICD-10-CM code belongs to (condition_codes.tsv and the
        vocabulary's ICD-10 categories); empty for a code no group lists."""
        found: list[str] = []
        if coding.system == "snomed":
            found.extend(sorted(self._condition_by_snomed.get(coding.code.strip(), ())))
        elif coding.system == "icd10":
            icd = coding.code.upper().replace(".", "").strip()
            # ICD-10 is hierarchical: N18.4 is a chronic kidney disease because N18 is. Every level
            # counts, the most specific first: N18.6 is end-stage renal disease and, through N18,
            # chronic kidney disease.
            for length in range(len(icd), 2, -1):
                found.extend(c for c in sorted(self._condition_by_icd.get(icd[:length], ())) if c not in found)
        return tuple(found)

    def normalize_condition(
        self, name: str, code: str | None = None, codings: Iterable[Coding] = ()
    ) -> NormalizedCondition:
        """A condition by its codes first (every coding given: a FHIR Condition often carries SNOMED CT
        and ICD-10-CM together), by its name when no code is known to a group. `code` alone, without a
        system, is read as ICD-10 (what records held before codes carried their system)."""
        codes = list(codings)
        if code and not codes:
            codes.append(_bare_condition_code(code))
        found: list[str] = []
        for coding in codes:
            for cid in self.condition_ids_of_code(coding):
                if cid not in found:
                    found.append(cid)
        if found:
            return NormalizedCondition(found[0], True, tuple(found))
        text = clean_name(name)
        for candidate in (text, text.replace("_", " "), _singular(text)):
            if candidate and candidate in self._condition_by_name:
                cid = self._condition_by_name[candidate]
                return NormalizedCondition(cid, True, (cid,))
        unknown = text.replace(" ", "_")
        return NormalizedCondition(unknown, False, (unknown,))


def _bare_condition_code(code: str) -> Coding:
    """A condition code with or without its system: `snomed:195967001`, `http://snomed.info/sct|195967001`,
    or a bare code (all digits and SNOMED-shaped: SNOMED CT; otherwise ICD-10, as records always held)."""
    text = code.strip()
    try:
        coding = coding_from_text(text)
    except ValueError:
        coding = None
    if coding is not None and coding.system in ("snomed", "icd10"):
        return coding
    if text.isdigit() and len(text) >= 6:
        return Coding("snomed", text)
    return Coding("icd10", text)


# --------------------------------------------------------------------------------------------------
# Interaction knowledge base


def _pair_key(a: EntityKey, b: EntityKey) -> tuple[EntityKey, EntityKey]:
    return (a, b) if a <= b else (b, a)


def pair_id(a: EntityKey, b: EntityKey, source: str) -> str:
    """Deterministic id of an unordered pair from one source, so that re-importing is idempotent."""
    (ka, na), (kb, nb) = _pair_key(a, b)
    digest = hashlib.sha256(f"{ka}:{na}\x1f{kb}:{nb}\x1f{source}".encode()).hexdigest()
    return f"ix-{digest[:24]}"


@dataclass(frozen=True)
class InteractionKnowledge:
    """Interaction pairs indexed on their unordered (kind, name) endpoints.

    Checking medications walks only the pairs their ingredients and classes take part in (a handful
    each), whatever the size of the knowledge base; one index by entity keeps memory at one entry
    per endpoint.
    """

    pairs: tuple[InteractionPair, ...]
    _by_entity: Mapping[EntityKey, tuple[InteractionPair, ...]] = field(repr=False)
    # Beside each entity's pairs, in the same order, the other endpoint of each (one shared key
    # object per entity, so this costs a pointer per endpoint): the walk in `pairs_among` looks
    # the other end up without rebuilding it from the pair.
    _others: Mapping[EntityKey, tuple[EntityKey, ...]] = field(repr=False, default_factory=dict)

    @classmethod
    def from_pairs(
        cls, pairs: Iterable[InteractionPair], overrides: Iterable[PairOverride] = ()
    ) -> InteractionKnowledge:
        by_id = {o.pair_id: o for o in overrides}
        kept: list[InteractionPair] = []
        by_entity: dict[EntityKey, list[InteractionPair]] = defaultdict(list)
        others: dict[EntityKey, list[EntityKey]] = defaultdict(list)
        canonical: dict[EntityKey, EntityKey] = {}
        for pair in pairs:
            if pair.unresolved:
                continue
            override = by_id.get(pair.id)
            if override is not None:
                if override.disabled:
                    continue
                if override.severity is not None:
                    pair = replace(pair, severity=override.severity)
            kept.append(pair)
            a, b = pair.keys
            a, b = canonical.setdefault(a, a), canonical.setdefault(b, b)
            by_entity[a].append(pair)
            others[a].append(b)
            if b != a:
                by_entity[b].append(pair)
                others[b].append(a)
        return cls(
            pairs=tuple(kept),
            _by_entity={k: tuple(v) for k, v in by_entity.items()},
            _others={k: tuple(v) for k, v in others.items()},
        )

    def __len__(self) -> int:
        return len(self.pairs)

    def between(self, keys_a: Iterable[EntityKey], keys_b: Iterable[EntityKey]) -> list[InteractionPair]:
        """Every pair with one endpoint among keys_a and the other among keys_b, each once."""
        found: dict[str, InteractionPair] = {}
        right = set(keys_b)
        for ka in set(keys_a):
            for pair in self._by_entity.get(ka, ()):
                a, b = pair.keys
                if (b if a == ka else a) in right:
                    found.setdefault(pair.id, pair)
        return [found[k] for k in sorted(found)]

    def pairs_among(self, key_sets: Sequence[Sequence[EntityKey]]) -> list[tuple[int, int, InteractionPair]]:
        """Every (i, j, pair) with i < j where one endpoint is among key_sets[i] and the other among key_sets[j].

        Walks the pairs each entity takes part in (a handful for a real drug) instead of probing every
        combination of two medications' keys, so a 40-medication list costs O(keys) lookups, not O(n^2 k^2).
        Sorted by (i, j, pair id): the same order as checking the medications two by two.
        """
        holders: dict[EntityKey, list[int]] = defaultdict(list)
        distinct = [set(keys) for keys in key_sets]
        for idx, keys in enumerate(distinct):
            for key in keys:
                holders[key].append(idx)
        found: dict[tuple[int, int, str], InteractionPair] = {}
        by_entity, others = self._by_entity, self._others
        for idx, keys in enumerate(distinct):
            for key in keys:
                entity_pairs = by_entity.get(key)
                if not entity_pairs:
                    continue
                for pair, other in zip(entity_pairs, others[key], strict=True):
                    js = holders.get(other)
                    if js is None:
                        continue
                    for j in js:
                        if j != idx:
                            found.setdefault((idx, j, pair.id) if idx < j else (j, idx, pair.id), pair)
        return [(i, j, found[(i, j, pid)]) for i, j, pid in sorted(found)]

    def involving(self, kind: str, name: str) -> tuple[InteractionPair, ...]:
        return self._by_entity.get((kind, name), ())


# --------------------------------------------------------------------------------------------------
# CSV import


class CsvImportError(ValueError):
    """The whole file is refused; every problem is listed with its line number."""

    def __init__(self, errors: Sequence[str]) -> None:
        self.errors = tuple(errors)
        shown = "\n".join(self.errors[:50])
        more = f"\n... and {len(self.errors) - 50} more" if len(self.errors) > 50 else ""
        super().__init__(f"{len(self.errors)} problem(s) in the interactions file:\n{shown}{more}")


_CSV_REQUIRED = ("drug_a", "drug_b", "severity")
_CSV_OPTIONAL = (
    "description",
    "recommendation",
    "interaction_type",
    "evidence_level",
    "avoid_combination",
    "source",
)
_TRUE = frozenset({"true", "t", "yes", "y", "1"})
_FALSE = frozenset({"false", "f", "no", "n", "0", ""})


def _endpoint(value: str) -> EntityKey:
    text = value.strip()
    kind, sep, rest = text.partition(":")
    if sep and kind.strip().lower() in ("class", "food", "food_group", "ingredient"):
        name = clean_name(rest)
        kind = kind.strip().lower()
        if kind == "class":
            name = name.replace(" ", "_")
        if not name:
            raise ValueError(f"{value!r} names no {kind}")
        return kind, name
    name = clean_name(text)
    if not name:
        raise ValueError("is empty")
    return "ingredient", name


def _csv_file_text(path: Path) -> str:
    """The file's text as written (no newline translation; a UTF-8 BOM dropped)."""
    data = path.read_bytes()
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8) :]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].replace(b"\r\n", b"\n").replace(b"\r", b"\n").count(b"\n") + 1
        raise CsvImportError(
            [f"line {line}: not UTF-8 text (byte {data[exc.start]:#04x}); nothing was imported"]
        ) from None


def _physical_lines(stream: Iterable[str], nul_lines: list[int]) -> Iterator[str]:
    """The stream's lines for csv.reader, noting the number of each line that holds a NUL."""
    for number, text in enumerate(stream, 1):
        if "\x00" in text:
            nul_lines.append(number)
        yield text


def _csv_problem(exc: csv.Error) -> str:
    if "field limit" in str(exc):
        return (
            f"a field is longer than {csv.field_size_limit():,} characters "
            "(a quote left open takes in the lines after it)"
        )
    return f"not readable as CSV: {exc}"


def parse_interactions_csv(
    source: str | TextIO | Path,
    *,
    default_source: str = "",
    vocabulary: Vocabulary | None = None,
) -> list[InteractionPair]:
    """Parse an interactions CSV, all or nothing.

    `source` is the CSV text, an open text file or a path. With a vocabulary, brand and salt names in
    ingredient columns are resolved to their ingredient.
    """
    if isinstance(source, Path):
        stream: TextIO = io.StringIO(_csv_file_text(source), newline="")
    elif isinstance(source, str):
        # newline="": CR alone ends a line too (Excel for Mac), and csv sees quoted line breaks as written.
        stream = io.StringIO(source.lstrip("\ufeff"), newline="")
    else:
        stream = source
    nul_lines: list[int] = []  # lines read so far that hold a NUL, not yet reported
    reader = csv.reader(_physical_lines(stream, nul_lines))
    try:
        header = next(reader)
    except StopIteration:
        raise CsvImportError(["line 1: the file is empty; expected a header row"]) from None
    except csv.Error as exc:
        raise CsvImportError([f"line 1: {_csv_problem(exc)}"]) from None
    if nul_lines:
        raise CsvImportError([f"line {n}: contains a NUL character" for n in nul_lines])
    columns = [h.strip().lower() for h in header]
    errors: list[str] = []
    missing = [c for c in _CSV_REQUIRED if c not in columns]
    if missing:
        errors.append(f"line 1: missing required column(s) {', '.join(missing)}")
    unknown = [c for c in columns if c not in _CSV_REQUIRED + _CSV_OPTIONAL]
    if unknown:
        errors.append(
            f"line 1: unknown column(s) {', '.join(repr(c) for c in unknown)}; "
            f"expected {', '.join(_CSV_REQUIRED + _CSV_OPTIONAL)}"
        )
    if len(set(columns)) != len(columns):
        errors.append("line 1: a column appears twice")
    if errors:
        raise CsvImportError(errors)
    index = {c: i for i, c in enumerate(columns)}
    width = len(columns)

    def col(row: list[str], name: str) -> str:
        i = index.get(name)
        return row[i].strip() if i is not None and i < len(row) else ""

    resolved: dict[str, EntityKey] = {}

    def endpoint(value: str) -> EntityKey:
        key = resolved.get(value)
        if key is None:
            key = _endpoint(value)
            if vocabulary is not None and key[0] == "ingredient":
                drug = vocabulary.normalize_drug(key[1])
                if len(drug.ingredients) != 1:
                    raise ValueError(
                        f"{value!r} is a combination product; list each ingredient on its own row"
                    )
                key = ("ingredient", drug.ingredients[0])
            resolved[value] = key
        return key

    pairs: list[InteractionPair] = []
    seen: dict[str, int] = {}
    while True:
        line = reader.line_num + 1  # a record's first line: line_num is its last once it is read
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            errors.append(f"line {line}: {_csv_problem(exc)}")
            if reader.line_num < line:  # nothing was read: stop rather than fail on the same spot forever
                break
            row = []
        if nul_lines:
            # PostgreSQL text cannot hold NUL; the record is not checked further.
            errors.extend(f"line {n}: contains a NUL character" for n in nul_lines)
            nul_lines.clear()
            continue
        if not row or all(not c.strip() for c in row):
            continue
        if len(row) > width:
            errors.append(f"line {line}: {len(row)} fields, the header has {width}")
            continue
        problems: list[str] = []
        a = b = ("", "")
        for column in ("drug_a", "drug_b"):
            try:
                key = endpoint(col(row, column))
            except ValueError as exc:
                problems.append(f"{column} {exc}")
                continue
            if column == "drug_a":
                a = key
            else:
                b = key
        raw_severity = col(row, "severity")
        severity = Severity.INFO
        try:
            severity = severity_from_source(raw_severity)
        except ValueError:
            problems.append(f"severity {raw_severity!r} is not on a known scale")
        evidence = EvidenceLevel.UNKNOWN
        try:
            evidence = evidence_from_source(col(row, "evidence_level"))
        except ValueError as exc:
            problems.append(str(exc))
        avoid_text = col(row, "avoid_combination").lower()
        if avoid_text not in _TRUE and avoid_text not in _FALSE:
            problems.append(f"avoid_combination {avoid_text!r} is not true or false")
        if problems:
            errors.extend(f"line {line}: {p}" for p in problems)
            continue
        if a[0].startswith("food") and b[0].startswith("food"):
            errors.append(f"line {line}: both sides are foods; the knowledge base holds drug interactions")
            continue
        src = col(row, "source") or default_source
        pid = pair_id(a, b, src)
        if pid in seen:
            errors.append(f"line {line}: the same pair from the same source as line {seen[pid]}")
            continue
        seen[pid] = line
        food_side = a[0].startswith("food") or b[0].startswith("food")
        pairs.append(
            InteractionPair(
                id=pid,
                a_kind=a[0],
                a=a[1],
                b_kind=b[0],
                b=b[1],
                severity=severity,
                source_severity=raw_severity,
                interaction_type=(
                    col(row, "interaction_type") or ("FOOD_DRUG" if food_side else "DRUG_DRUG")
                ).upper(),
                evidence=evidence,
                # Interned: class-level knowledge expanded to pairs repeats its texts thousands of times.
                description=sys.intern(col(row, "description")),
                recommendation=sys.intern(col(row, "recommendation")),
                # A contraindicated pair is one to avoid unless the source says otherwise.
                avoid_combination=avoid_text in _TRUE or (severity is Severity.CRITICAL and avoid_text == ""),
                source=sys.intern(src),
            )
        )
    if errors:
        raise CsvImportError(errors)
    return pairs


# --------------------------------------------------------------------------------------------------
# Knowledge as a whole


@dataclass(frozen=True)
class Knowledge:
    vocabulary: Vocabulary
    interactions: InteractionKnowledge
    allergens: Mapping[str, AllergenRecord]  # the allergen groups; normally vocabulary.allergens
    version: str
    # Dose limits (engine.dose_limits); None: not loaded, and a dose given is then reported unchecked.
    dose: DoseKnowledge | None = None
    # Renal bands (engine.renal); None: not loaded, and a renally cleared drug is then reported unchecked.
    renal: RenalKnowledge | None = None
    # Child-Pugh bands (engine.hepatic); None: not loaded, and a drug with hepatic bands is reported unchecked.
    hepatic: HepaticKnowledge | None = None


class KnowledgeFileError(ValueError):
    pass


def _tuple(value: Any, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise KnowledgeFileError(f"{where}: expected a list of names, got {value!r}")


def _mapping(value: Any, where: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise KnowledgeFileError(f"{where}: expected a mapping")
    return value


def _grade(value: Any, where: str) -> Severity | None:
    if value is None:
        return None
    try:
        return severity_from_source(str(value))
    except ValueError as exc:
        raise KnowledgeFileError(f"{where}: {exc}") from None


_NO_ATC = (
    "WHO ATC codes and ATC-kind classes are not accepted: the WHO ATC/DDD Index is not licensed for "
    "commercial reuse (rules/knowledge/SOURCES.md); base a class on FDA's pharmacologic classes (`fda`)"
)
_FDA_CLASS = re.compile(r"^(?P<name>.+?)\s*\[(?P<type>[A-Za-z]+)\]$")


def _fda_class(value: str, where: str) -> str:
    """ "Proton Pump Inhibitor [EPC]" (as FDA writes it) -> "epc:proton pump inhibitor" (pharm_classes.tsv id)."""
    m = _FDA_CLASS.match(value.strip())
    if m is None or m["type"] not in PHARM_CLASS_TYPES:
        raise KnowledgeFileError(
            f"{where}: {value!r} is not an FDA class written 'Name [TYPE]', TYPE one of {', '.join(PHARM_CLASS_TYPES)}"
        )
    return pharm_class_id(m["type"], m["name"])


def vocabulary_from_document(
    doc: Mapping[str, Any],
    *,
    concepts: Iterable[DrugConcept] | ConceptRows = (),
    ndc: NdcIndex | None = None,
    version: str = "",
    pharm_classes: Mapping[str, tuple[str, ...]] | None = None,
) -> Vocabulary:
    """Build a Vocabulary from the parsed `vocabulary.yaml` document (the shape in rules/README.md)."""
    classes = []
    for cid, spec in _mapping(doc.get("classes"), "classes").items():
        spec = _mapping(spec, f"classes.{cid}")
        if "atc" in spec:
            raise KnowledgeFileError(f"classes.{cid}.atc: {_NO_ATC}")
        kind = str(spec.get("kind", "CLINICAL")).upper()
        if kind != "CLINICAL":
            hint = f" ({_NO_ATC})" if kind == "ATC" else ""
            raise KnowledgeFileError(f"classes.{cid}.kind: {kind!r} is not CLINICAL{hint}")
        classes.append(
            DrugClassRecord(
                id=str(cid),
                name=str(spec.get("name", cid)),
                fda=tuple(_fda_class(v, f"classes.{cid}.fda") for v in _tuple(spec.get("fda"), f"classes.{cid}.fda")),
                outside_fda=tuple(
                    clean_name(str(n)) for n in _mapping(spec.get("outside_fda"), f"classes.{cid}.outside_fda")
                ),
            )
        )
    ingredients = []
    for name, spec in _mapping(doc.get("ingredients"), "ingredients").items():
        spec = _mapping(spec, f"ingredients.{name}")
        if "atc" in spec:
            raise KnowledgeFileError(f"ingredients.{name}.atc: {_NO_ATC}")
        ingredients.append(
            IngredientRecord(
                name=clean_name(str(name)),
                classes=_tuple(spec.get("classes"), f"ingredients.{name}.classes"),
            )
        )
    aliases = [
        AliasRecord(alias=str(alias), ingredients=_tuple(target, f"aliases.{alias}"))
        for alias, target in _mapping(doc.get("aliases"), "aliases").items()
    ]
    foods = [
        FoodRecord(
            name=clean_name(str(name)),
            # `name: [group, ...]` (foods.yaml) or `name: {groups: [...]}` (vocabulary.yaml)
            groups=_tuple(spec, f"foods.{name}")
            if isinstance(spec, list)
            else _tuple(_mapping(spec, f"foods.{name}").get("groups"), f"foods.{name}.groups"),
        )
        for name, spec in _mapping(doc.get("foods"), "foods").items()
    ]
    allergens = []
    for name, spec in _mapping(doc.get("allergens"), "allergens").items():
        spec = _mapping(spec, f"allergens.{name}")
        cross = []
        for i, item in enumerate(spec.get("cross") or ()):
            item = _mapping(item, f"allergens.{name}.cross[{i}]")
            if "class" in item:
                target_kind: Literal["class", "ingredient"] = "class"
                target = str(item["class"])
            elif "ingredient" in item:
                target_kind, target = "ingredient", clean_name(str(item["ingredient"]))
            else:
                raise KnowledgeFileError(f"allergens.{name}.cross[{i}]: needs a class or an ingredient")
            try:
                severity = severity_from_source(str(item.get("severity", "MODERATE")))
            except ValueError as exc:
                raise KnowledgeFileError(f"allergens.{name}.cross[{i}]: {exc}") from None
            cross.append(CrossReactivity(target_kind, target, severity, str(item.get("note", ""))))
        allergens.append(
            AllergenRecord(
                name=clean_name(str(name)),
                category=str(spec.get("category", "DRUG")).upper(),
                match_ingredients=tuple(clean_name(i) for i in _tuple(spec.get("ingredients"), name)),
                match_classes=_tuple(spec.get("classes"), f"allergens.{name}.classes"),
                match_foods=tuple(clean_name(f) for f in _tuple(spec.get("foods"), name)),
                match_food_groups=_tuple(spec.get("food_groups"), f"allergens.{name}.food_groups"),
                cross=tuple(cross),
                synonyms=_tuple(spec.get("synonyms"), f"allergens.{name}.synonyms"),
                member_grade=_grade(spec.get("member_grade"), f"allergens.{name}.member_grade"),
                note=str(spec.get("note") or ""),
            )
        )
    conditions = []
    for cid, spec in _mapping(doc.get("conditions"), "conditions").items():
        spec = _mapping(spec, f"conditions.{cid}")
        conditions.append(
            ConditionRecord(
                id=str(cid),
                synonyms=_tuple(spec.get("synonyms"), f"conditions.{cid}.synonyms"),
                icd10=_tuple(spec.get("icd10"), f"conditions.{cid}.icd10"),
                snomed=_tuple(spec.get("snomed"), f"conditions.{cid}.snomed"),
            )
        )
    return Vocabulary(
        ingredients=ingredients,
        classes=classes,
        aliases=aliases,
        foods=foods,
        allergens=allergens,
        conditions=conditions,
        salt_words=_tuple(doc.get("salt_words"), "salt_words"),
        concepts=concepts,
        ndc=ndc,
        version=version,
        pharm_classes=pharm_classes,
    )


FOODS_FILE = "foods.yaml"


def merge_food_document(vocabulary: Mapping[str, Any], foods_doc: Any) -> dict[str, Any]:
    """vocabulary.yaml with foods.yaml's foods and food allergens added; a name in both is an error
    (one fact, one place)."""
    foods_doc = _mapping(foods_doc, "foods.yaml")
    merged = dict(vocabulary)
    for section in ("foods", "allergens"):
        mine = _mapping(vocabulary.get(section), section)
        theirs = _mapping(foods_doc.get(section), f"foods.yaml {section}")
        twice = sorted(set(map(str, mine)) & set(map(str, theirs)))
        if twice:
            raise KnowledgeFileError(f"{section}: {', '.join(twice)} also in vocabulary.yaml")
        merged[section] = {**mine, **theirs}
    return merged


CONDITIONS_FILE = "conditions.yaml"
CONDITION_CODES_FILE = "condition_codes.tsv"
CONDITION_CODE_COLUMNS = ("condition", "system", "code", "display", "source")


def parse_condition_codes(text: str, *, where: str = CONDITION_CODES_FILE) -> dict[str, dict[str, list[str]]]:
    """`condition<TAB>system<TAB>code<TAB>display<TAB>source` (built by build_conditions.py) ->
    condition id -> {"icd10": [...], "snomed": [...]}. Every code is checked against its system's shape."""
    lines = text.splitlines()
    if not lines or tuple(lines[0].split("\t")) != CONDITION_CODE_COLUMNS:
        header = " ".join(CONDITION_CODE_COLUMNS)
        raise KnowledgeFileError(f"{where}: the first line must be the header {header}")
    found: dict[str, dict[str, list[str]]] = {}
    for number, line in enumerate(lines[1:], start=2):
        if not line:
            continue
        cells = line.split("\t")
        if len(cells) != 5 or not all(cells):
            raise KnowledgeFileError(f"{where}:{number}: expected condition, system, code, display and source")
        cid, system, code = cells[0], cells[1], cells[2]
        if system not in ("icd10", "snomed"):
            raise KnowledgeFileError(f"{where}:{number}: system {system!r} is not icd10 or snomed")
        try:
            parse_coding(system, code)
        except ValueError as exc:
            raise KnowledgeFileError(f"{where}:{number}: {exc}") from None
        found.setdefault(cid, {"icd10": [], "snomed": []})[system].append(code)
    return found


def merge_condition_document(
    doc: Mapping[str, Any], spec: Mapping[str, Any], codes: Mapping[str, Mapping[str, list[str]]]
) -> dict[str, Any]:
    """vocabulary.yaml's conditions with conditions.yaml's (new ids, added synonyms) and the built
    codes folded in. A code table row for a condition neither file defines is refused."""
    merged = dict(doc)
    conditions = {
        str(k): dict(_mapping(v, f"conditions.{k}")) for k, v in _mapping(doc.get("conditions"), "conditions").items()
    }
    for cid, entry in _mapping(spec.get("conditions"), f"{CONDITIONS_FILE}: conditions").items():
        entry = _mapping(entry, f"{CONDITIONS_FILE}: conditions.{cid}")
        if not re.fullmatch(r"[a-z0-9_]+", str(cid)):
            raise KnowledgeFileError(
                f"{CONDITIONS_FILE}: condition id {cid!r} is not lower-case letters, digits and _"
            )
        target = conditions.setdefault(str(cid), {})
        synonyms = list(_tuple(target.get("synonyms"), f"conditions.{cid}.synonyms"))
        for synonym in _tuple(entry.get("synonyms"), f"{CONDITIONS_FILE}: conditions.{cid}.synonyms"):
            if synonym not in synonyms:
                synonyms.append(synonym)
        target["synonyms"] = synonyms
    for cid, by_system in codes.items():
        if cid not in conditions:
            raise KnowledgeFileError(
                f"{CONDITION_CODES_FILE}: condition {cid!r} is defined in neither vocabulary.yaml nor {CONDITIONS_FILE}"
            )
        target = conditions[cid]
        icd10 = list(_tuple(target.get("icd10"), f"conditions.{cid}.icd10"))
        icd10 += [c for c in by_system["icd10"] if c not in icd10]
        target["icd10"] = icd10
        snomed = set(_tuple(target.get("snomed"), f"conditions.{cid}.snomed")) | set(by_system["snomed"])
        target["snomed"] = sorted(snomed)
    merged["conditions"] = conditions
    return merged


def _with_conditions(directory: Path, doc: Mapping[str, Any], digest: Any) -> Mapping[str, Any]:
    """The vocabulary document with conditions.yaml and condition_codes.tsv folded in; unchanged when
    the folder has neither. Both go together: a code table without its definitions is refused."""
    pair = _paired_files(directory, CONDITIONS_FILE, CONDITION_CODES_FILE, digest)
    if pair is None:
        return doc
    spec, table_text = pair
    codes = parse_condition_codes(table_text, where=str(directory / CONDITION_CODES_FILE))
    return merge_condition_document(doc, _mapping(spec, CONDITIONS_FILE), codes)


def _paired_files(directory: Path, spec_name: str, table_name: str, digest: Any) -> tuple[Any, str] | None:
    """A YAML spec and the table that goes with it, both counted in `digest`: (the parsed spec, the
    table's text), None when the folder has neither. One without the other is refused rather than
    half-loaded."""
    spec_path, table_path = directory / spec_name, directory / table_name
    if not spec_path.is_file() and not table_path.is_file():
        return None
    for path in (spec_path, table_path):
        if not path.is_file():
            raise KnowledgeFileError(f"{path}: not found ({spec_name} and {table_name} go together)")
    spec_text, table_text = spec_path.read_text(encoding="utf-8"), table_path.read_text(encoding="utf-8")
    digest.update(spec_text.encode())
    digest.update(table_text.encode())
    try:
        return _yaml.safe_load(spec_text), table_text
    except yaml.YAMLError as exc:
        raise KnowledgeFileError(f"{spec_path}: {exc}") from None


PHARM_CLASS_FILE = "pharm_classes.tsv"
PHARM_CLASS_COLUMNS = ("ingredient", "type", "class", "source")
PHARM_CLASS_TYPES = ("EPC", "MoA", "CS", "PE")


def pharm_class_id(kind: str, name: str) -> str:
    """The class id of an FDA class: `Penicillin-class Antibacterial` [EPC] -> "epc:penicillin-class antibacterial"."""
    return f"{kind.lower()}:{' '.join(name.split()).lower()}"


def parse_pharm_classes(text: str, *, where: str = PHARM_CLASS_FILE) -> dict[str, tuple[str, ...]]:
    """`ingredient<TAB>type<TAB>class<TAB>source` (built by build_pharm_classes.py) -> ingredient -> class ids.
    Ids are interned: a few hundred class names are shared by thousands of ingredients."""
    lines = text.splitlines()
    if not lines or tuple(lines[0].split("\t")) != PHARM_CLASS_COLUMNS:
        raise KnowledgeFileError(f"{where}: the first line must be the header {' '.join(PHARM_CLASS_COLUMNS)}")
    found: dict[str, set[str]] = defaultdict(set)
    for number, line in enumerate(lines[1:], start=2):
        if not line:
            continue
        cells = line.split("\t")
        if len(cells) != 4 or not all(cells):
            raise KnowledgeFileError(f"{where}:{number}: expected ingredient, type, class and source")
        if cells[1] not in PHARM_CLASS_TYPES:
            raise KnowledgeFileError(
                f"{where}:{number}: type {cells[1]!r} is not one of {', '.join(PHARM_CLASS_TYPES)}"
            )
        found[sys.intern(clean_name(cells[0]))].add(sys.intern(pharm_class_id(cells[1], cells[2])))
    return {name: tuple(sorted(ids)) for name, ids in found.items()}


CONCEPT_FILE = "rxnorm.tsv"
NDC_FILE = "rxnorm_ndc.tsv.gz"


def load_concept_files(directory: Path) -> tuple[ConceptRows, NdcIndex]:
    """The shipped RxNorm concept table and its NDCs from a knowledge folder (empty when absent),
    read line by line into their compact forms (engine.concept_store)."""
    concepts = ConceptRows()
    path = directory / CONCEPT_FILE
    if path.is_file():
        with path.open(encoding="utf-8") as handle:
            _check_header(next(handle, ""), str(path))
            read_concept_lines(handle, where=str(path), first_line=2, rows=concepts)
    ndc_path = directory / NDC_FILE
    ndc = read_ndc_file(ndc_path) if ndc_path.is_file() else NdcIndex()
    return concepts, ndc


# The interaction files of a knowledge folder, each with the source its rows default to: the curated
# pairs, and the class-level knowledge expanded to ingredient pairs by build_mechanisms.py.
INTERACTION_FILES = (
    ("interactions.csv", "rules/knowledge/interactions.csv"),
    ("mechanism_pairs.csv", "rules/knowledge/mechanism_pairs.csv"),
)


def _with_allergy_classes(directory: Path, doc: Mapping[str, Any], digest: Any) -> Mapping[str, Any]:
    """The vocabulary document with the folder's allergy classes folded in (engine.allergy_knowledge);
    unchanged when the folder has none. Both files must be there together: a class table without
    its definitions, or the reverse, is refused rather than half-loaded."""
    pair = _paired_files(directory, ALLERGY_FILE, MEMBERSHIP_FILE, digest)
    if pair is None:
        return doc
    spec, table_text = pair
    spec_path = directory / ALLERGY_FILE
    try:
        memberships = parse_memberships(table_text, where=str(directory / MEMBERSHIP_FILE))
        return merge_allergy_document(doc, _mapping(spec, "allergy"), memberships)
    except (AllergyFileError, KnowledgeFileError) as exc:
        raise KnowledgeFileError(f"{spec_path}: {exc}") from None


def load_knowledge_files(directory: Path) -> Knowledge:
    """Read `vocabulary.yaml` (with `foods.yaml`, when present) and the interaction files
    (`interactions.csv`, `mechanism_pairs.csv`) from a knowledge folder (rules/knowledge)."""
    vocab_path = directory / "vocabulary.yaml"
    if not vocab_path.is_file():
        raise KnowledgeFileError(f"{vocab_path}: not found")
    vocab_text = vocab_path.read_text(encoding="utf-8")
    try:
        doc = _yaml.safe_load(vocab_text)
    except yaml.YAMLError as exc:
        raise KnowledgeFileError(f"{vocab_path}: {exc}") from None
    concepts, ndc = load_concept_files(directory)
    rxnorm_version = (directory / "rxnorm.version").read_text(encoding="utf-8").strip() if concepts else "none"
    digest = hashlib.sha256(vocab_text.encode())
    foods_path = directory / FOODS_FILE
    if foods_path.is_file():
        foods_text = foods_path.read_text(encoding="utf-8")
        digest.update(foods_text.encode())
        try:
            doc = merge_food_document(_mapping(doc, "vocabulary"), _yaml.safe_load(foods_text))
        except (yaml.YAMLError, KnowledgeFileError) as exc:
            raise KnowledgeFileError(f"{foods_path}: {exc}") from None
    doc = _with_allergy_classes(directory, _mapping(doc, "vocabulary"), digest)
    doc = _with_conditions(directory, doc, digest)
    pharm_classes = None
    pharm_path = directory / PHARM_CLASS_FILE
    if pharm_path.is_file():
        pharm_text = pharm_path.read_text(encoding="utf-8")
        digest.update(pharm_text.encode())
        pharm_classes = parse_pharm_classes(pharm_text, where=str(pharm_path))
    version = f"{rxnorm_version}+curated:{digest.hexdigest()[:12]}"
    try:
        vocabulary = vocabulary_from_document(
            doc, concepts=concepts, ndc=ndc, version=version, pharm_classes=pharm_classes
        )
    except KnowledgeFileError as exc:
        raise KnowledgeFileError(f"{vocab_path}: {exc}") from None
    pairs: list[InteractionPair] = []
    for name, default_source in INTERACTION_FILES:
        csv_path = directory / name
        if not csv_path.is_file():
            continue
        csv_text = csv_path.read_text(encoding="utf-8-sig")
        # The version covers every file's bytes: a change to any of them is a new knowledge version.
        digest.update(csv_text.encode())
        try:
            pairs.extend(parse_interactions_csv(csv_text, default_source=default_source))
        except CsvImportError as exc:
            raise KnowledgeFileError(f"{csv_path}: {exc}") from None
    try:
        dose = load_dose_knowledge(directory)
    except DoseKnowledgeError as exc:
        raise KnowledgeFileError(str(exc)) from None
    if dose is not None:
        digest.update((directory / DOSE_FILE).read_bytes())
    try:
        renal = load_renal_knowledge(directory)
    except RenalKnowledgeError as exc:
        raise KnowledgeFileError(str(exc)) from None
    if renal is not None:
        digest.update((directory / RENAL_FILE).read_bytes())
    try:
        hepatic = load_hepatic_knowledge(directory)
    except HepaticKnowledgeError as exc:
        raise KnowledgeFileError(str(exc)) from None
    if hepatic is not None:
        digest.update((directory / HEPATIC_FILE).read_bytes())
    return Knowledge(
        vocabulary=vocabulary,
        interactions=InteractionKnowledge.from_pairs(pairs),
        allergens=vocabulary.allergens,
        version=f"files:{digest.hexdigest()[:16]}",
        dose=dose,
        renal=renal,
        hepatic=hepatic,
    )
