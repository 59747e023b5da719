"""Drug identity, text side: folding what people and systems write, codes, and the RxNorm name grammar.

Pure functions, no vocabulary: `engine.knowledge.Vocabulary` looks up what these produce. The rule
throughout is *never guess*: a step that removes words (salts, release modifiers, dose text) is only
taken by the vocabulary when what remains is a known name, and a name that could be two different
things is ambiguous, never resolved.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

__all__ = [
    "CODE_SYSTEMS",
    "Coding",
    "ParsedDrug",
    "fold",
    "normalise_ndc",
    "parse_coding",
    "parse_drug_text",
    "strip_dose_text",
]

# The FHIR canonical URIs of the code systems a drug, an allergen or a condition may carry, and the
# short names the CLI and our own records use.
CODE_SYSTEMS: dict[str, str] = {
    "http://www.nlm.nih.gov/research/umls/rxnorm": "rxnorm",
    "http://hl7.org/fhir/sid/ndc": "ndc",
    "http://snomed.info/sct": "snomed",
    "http://hl7.org/fhir/sid/icd-10-cm": "icd10",
    "http://hl7.org/fhir/sid/icd-10": "icd10",
    "rxnorm": "rxnorm",
    "ndc": "ndc",
    "snomed": "snomed",
    "sct": "snomed",
    "icd10": "icd10",
    "icd-10": "icd10",
    "icd10cm": "icd10",
    "icd-10-cm": "icd10",
}
SYSTEM_URIS: dict[str, str] = {
    "rxnorm": "http://www.nlm.nih.gov/research/umls/rxnorm",
    "ndc": "http://hl7.org/fhir/sid/ndc",
    "snomed": "http://snomed.info/sct",
    "icd10": "http://hl7.org/fhir/sid/icd-10-cm",
}
_CODE_SHAPE: dict[str, re.Pattern[str]] = {
    "rxnorm": re.compile(r"^[0-9]{1,10}$"),
    # 11 digits, or the FDA's 10-digit layouts 4-4-2, 5-3-2 and 5-4-1 with their hyphens
    "ndc": re.compile(r"^(?:[0-9]{11}|[0-9]{4}-[0-9]{4}-[0-9]{2}|[0-9]{5}-[0-9]{3}-[0-9]{2}|[0-9]{5}-[0-9]{4}-[0-9]{1,2})$"),  # noqa: E501
    "snomed": re.compile(r"^[1-9][0-9]{5,17}$"),
    "icd10": re.compile(r"^[A-Za-z][0-9][0-9A-Za-z](?:\.?[0-9A-Za-z]{1,4})?$"),
}


@dataclass(frozen=True, slots=True)
class Coding:
    system: str  # short name: rxnorm | ndc | snomed | icd10
    code: str

    @property
    def uri(self) -> str:
        return SYSTEM_URIS[self.system]

    def __str__(self) -> str:
        return f"{self.system}:{self.code}"


def normalise_ndc(code: str) -> str:
    """An NDC in any of the FDA's 10-digit layouts (4-4-2, 5-3-2, 5-4-1) or as 11 digits -> 11 digits
    (the 5-4-2 layout RxNorm and HIPAA transactions use)."""
    if "-" not in code:
        return code
    labeler, product, package = code.split("-")
    return labeler.zfill(5) + product.zfill(4) + package.zfill(2)


def parse_coding(system: str, code: str) -> Coding:
    """A coding from a system (short name or FHIR URI) and a code; ValueError names what is wrong."""
    short = CODE_SYSTEMS.get(system.strip().lower().rstrip("/"))
    if short is None:
        known = ", ".join(sorted(set(CODE_SYSTEMS.values())))
        raise ValueError(f"code system {system[:80]!r} is not supported (one of {known}, or their FHIR URIs)")
    code = code.strip()
    if not _CODE_SHAPE[short].match(code):
        raise ValueError(f"{code[:40]!r} is not a valid {short} code")
    if short == "ndc":
        code = normalise_ndc(code)
    elif short == "icd10":
        code = code.upper()
    return Coding(short, code)


def coding_from_text(text: str) -> Coding | None:
    """`rxnorm:11289` or `http://www.nlm.nih.gov/research/umls/rxnorm|11289` -> a Coding; a plain
    name -> None. A text that names a known system but a malformed code raises ValueError."""
    text = text.strip()
    if "|" in text:
        system, _, code = text.rpartition("|")
        return parse_coding(system, code)
    system, sep, code = text.partition(":")
    if sep and system.strip().lower() in CODE_SYSTEMS and not system.strip().lower().startswith("http"):
        return parse_coding(system, code)
    return None


# --------------------------------------------------------------------------------------------------
# Folding

_DASHES = dict.fromkeys(map(ord, "\u2010\u2011\u2012\u2013\u2014\u2015\u2212\ufe63\uff0d"), "-")
_QUOTES = dict.fromkeys(map(ord, "\u2018\u2019\u201a\u201b\u2032\u00b4`"), "'")
_SPACE = re.compile(r"\s+")


_MARKS = dict.fromkeys(map(ord, "\u00ae\u2122\u2120\u00a9\u201c\u201d\u201e\u00ab\u00bb\""), None)
_SLASHES = dict.fromkeys(map(ord, "\u2044\u2215\uff0f"), "/")


def fold(text: str) -> str:
    """The form names are compared in: Unicode NFKC (full-width letters, ligatures), format and
    invisible characters removed (zero-width, BOM, soft hyphen, direction marks), trademark signs and
    double quotes removed, accents removed (phénelzine -> phenelzine), dashes, slashes and quotes
    unified, case folded, one space between words."""
    text = str(text)
    if text.isascii() and text.isprintable():
        # The common case, and the same result: nothing for NFKC or the category filters to do.
        return _SPACE.sub(" ", text.replace('"', "").replace("`", "'").lower()).strip(" .,;:")
    # Before NFKC, which would turn "™" into the letters "TM".
    text = unicodedata.normalize("NFKC", text.translate(_MARKS)).translate(_SLASHES)
    text = "".join(ch for ch in text if unicodedata.category(ch) not in ("Cf", "Cc") or ch in "\t\n")
    decomposed = unicodedata.normalize("NFD", text)
    text = "".join(ch for ch in decomposed if unicodedata.category(ch) != "Mn")
    text = unicodedata.normalize("NFC", text).translate(_DASHES).translate(_QUOTES).casefold()
    return _SPACE.sub(" ", text).strip(" .,;:")


# --------------------------------------------------------------------------------------------------
# The RxNorm display grammar and prescription text

# Routes as qualifiers: "(ophthalmic)", or as words of a dose form ("Ophthalmic Solution").
ROUTE_WORDS = frozenset(
    """oral ophthalmic otic topical nasal vaginal rectal inhalation inhalant inhaled transdermal sublingual
    buccal intravenous intramuscular subcutaneous intradermal intrathecal epidural injectable cutaneous
    dental urethral intravesical enteral po iv im sc subcut sq""".split()
)
_ROUTE_CANONICAL = {
    "po": "oral", "iv": "intravenous", "im": "intramuscular", "sc": "subcutaneous", "subcut": "subcutaneous",
    "sq": "subcutaneous", "inhalant": "inhalation", "inhaled": "inhalation",
}
# Dose-form words (RxNorm dose forms and how prescriptions write them). Only ever removed from the
# end of a name, and only when what remains is a known name.
FORM_WORDS = frozenset(
    """tablet tablets tab tabs capsule capsules cap caps caplet caplets solution suspension syrup elixir
    cream ointment gel lotion foam shampoo patch patches drops drop spray sprays inhaler powder granules
    pellet pellets injection injectable lozenge troche film strip wafer suppository suppositories enema
    emulsion liquid concentrate kit pack chewable dispersible disintegrating orally effervescent coated
    film-coated release extended delayed modified sustained controlled immediate extended-release
    delayed-release modified-release metered dose auto-injector autoinjector pen prefilled syringe
    cartridge vial ampule bag implant insert ring system device bar stick mouthwash rinse paste jelly
    mucosal usp nf enteric hfa diskus ellipta respimat handihaler flexhaler inhub pressair flexpen kwikpen
    solostar depot""".split()
) | ROUTE_WORDS
# Release and strength modifiers that never change the ingredients ("Toprol XL", "Bactrim DS").
# Deliberately absent: PM, D, HCT, Plus, Cold, Sinus, Allergy, Forte - each adds or changes ingredients.
RELEASE_MODIFIERS = frozenset("er xr xl sr cr la cd dr ec odt ir ds ss xt".split())
# Strength claims of over-the-counter names that never change the ingredients.
STRENGTH_PHRASES = ("extra strength", "maximum strength", "regular strength", "max strength")
# "Ceftriaxone for Injection, USP", "Amoxicillin for Oral Suspension": what follows "for" is the form.
_FOR_FORM = re.compile(r"\s+(?:in water\s+)?for\s+(?:oral\s+|injectable\s+|topical\s+|ophthalmic\s+)?"
                       r"(?:injection|suspension|solution|inhalation|infusion|oral use|use)\b.*$")
# An application number before a display string ("NDA020503 200 ACTUAT ..."), as some EHRs send.
_APPLICATION_NUMBER = re.compile(r"^(?:a?nda|bla)\s?\d{6}\s+")
# Leading quantities of the RxNorm grammar: "24 HR", "10 ML", "120 ACTUAT", "0.4 ML".
_LEADING_QUANTITY = re.compile(r"^(?:\d+(?:\.\d+)?\s*(?:hr|ml|actuat|day|days|mg|mcg|g|unt|l|cm2|oz|meq)\s+)+")
_BRACKET = re.compile(r"\[([^\]]*)\]")
_PARENS = re.compile(r"\(([^)]*)\)")
_UNIT_WORD = r"(?:ml|l|actuat|hr|g|mg|mcg|kg|day|spray|dose|cm2|unt|unit|units|tab|cap|meq|mmol|%)"
# A slash that continues a strength ("10 mg/ml", "800/160", "5 mg / 5 ml") is not between ingredients.
_RATIO_SLASH = re.compile(rf"(?<=[\d%a-z])\s*/\s*(?=\d|{_UNIT_WORD}\b)")
_UNIT_WORDS = frozenset(
    "per ml l actuat hr g mg mcg kg day spray dose cm2 unt unit units meq mmol % iu mg/ml ml/ml".split()
)
_STRICT_SEPARATORS = re.compile(r"\s*/\s*|\s*\+\s*|\s*&\s*|\s+with\s+")
_NUMERIC = re.compile(r"^[\d.]+[a-z%]*$|^\d")


@dataclass(frozen=True, slots=True)
class ParsedDrug:
    """What the grammar found in one medication string; the vocabulary decides what names mean."""

    text: str  # the folded whole string
    components: tuple[str, ...]  # ingredient or product names, dose text removed
    brand: str | None = None  # "[Bactrim]"
    route: str | None = None
    dose_form: str | None = None
    has_strength: bool = False


def _route_of(words: list[str]) -> str | None:
    for word in words:
        if word in ROUTE_WORDS:
            return _ROUTE_CANONICAL.get(word, word)
    return None


def strip_dose_text(component: str) -> tuple[str, list[str], bool]:
    """`sertraline 50 mg tablet` -> (`sertraline`, [`tablet`], True): the name before the first
    number, and the words after it (dose form, route). The first word is always kept, so a brand that
    starts with a digit survives; a brand with a number in it ("D.H.E. 45") is found by the
    vocabulary's whole-string lookup before this runs."""
    words = component.split(" ")
    for i, word in enumerate(words):
        if i > 0 and _NUMERIC.match(word):
            tail = [w for w in words[i:] if not _NUMERIC.match(w)]
            return " ".join(words[:i]).strip(" -,.;:"), tail, True
    return component, [], False


def parse_drug_text(text: str) -> ParsedDrug:
    """Parse a medication string: RxNorm display names (`Sulfamethoxazole 800 MG / Trimethoprim 160 MG
    Oral Tablet [Bactrim]`, `24 HR Metoprolol succinate 100 MG Extended Release Oral Tablet`,
    `10 ML Furosemide 10 MG/ML Injection`) and prescription text (`sertraline 50mg tab po`)."""
    folded = fold(text)
    brand = None
    match = _BRACKET.search(folded)
    if match:
        brand = fold(match.group(1)) or None
        folded_wo_brand = _BRACKET.sub(" ", folded)
    else:
        folded_wo_brand = folded
    route = None

    def parens(m: re.Match[str]) -> str:
        nonlocal route
        inner = fold(m.group(1))
        if inner in ROUTE_WORDS:
            route = _ROUTE_CANONICAL.get(inner, inner)
        return " "

    body = _PARENS.sub(parens, folded_wo_brand)
    body = _APPLICATION_NUMBER.sub("", _SPACE.sub(" ", body).strip())
    body = _LEADING_QUANTITY.sub("", _FOR_FORM.sub("", body))
    for phrase in STRENGTH_PHRASES:
        if body.endswith(" " + phrase):
            body = body[: -len(phrase) - 1]
    body = _RATIO_SLASH.sub(" per ", body)
    components: list[str] = []
    tail_words: list[str] = []
    has_strength = False
    for piece in _STRICT_SEPARATORS.split(body):
        piece = piece.strip(" -,.;:")
        if not piece:
            continue
        name, tail, strength = strip_dose_text(piece)
        has_strength = has_strength or strength
        if tail:
            tail_words = tail
        if name:
            components.append(name)
    dose_form = " ".join(w for w in tail_words if w not in _UNIT_WORDS) or None
    if route is None:
        route = _route_of(tail_words) or _route_of(components[-1].split(" ") if components else [])
    return ParsedDrug(
        text=folded,
        components=tuple(components),
        brand=brand,
        route=route,
        dose_form=dose_form,
        has_strength=has_strength,
    )
