"""Drug allergy classes (rules/knowledge/allergy.yaml and allergy_classes.tsv) folded into the
vocabulary document, so that the classes, their memberships, the INN names they were read by and
their allergen groups travel with the vocabulary everywhere it goes (files, the database, the
engine). Pure: text and mappings in, a new document out.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

__all__ = [
    "ALLERGY_FILE",
    "MEMBERSHIP_COLUMNS",
    "MEMBERSHIP_FILE",
    "AllergyFileError",
    "merge_allergy_document",
    "parse_memberships",
]

ALLERGY_FILE = "allergy.yaml"
MEMBERSHIP_FILE = "allergy_classes.tsv"
MEMBERSHIP_COLUMNS = ("class", "ingredient", "source")


class AllergyFileError(ValueError):
    pass


def _name(text: Any) -> str:
    return " ".join(str(text).split()).strip(" .,;:").lower()


def parse_memberships(text: str, *, where: str = MEMBERSHIP_FILE) -> list[tuple[str, str, str]]:
    """`class<TAB>ingredient<TAB>source` lines under that header (built by build_allergy_classes.py)."""
    lines = text.splitlines()
    if not lines or tuple(lines[0].split("\t")) != MEMBERSHIP_COLUMNS:
        raise AllergyFileError(f"{where}: the first line must be the header {' '.join(MEMBERSHIP_COLUMNS)}")
    rows: list[tuple[str, str, str]] = []
    for number, line in enumerate(lines[1:], start=2):
        if not line:
            continue
        cells = line.split("\t")
        if len(cells) != 3 or not cells[0] or not cells[1] or not cells[2]:
            raise AllergyFileError(f"{where}:{number}: expected class, ingredient and source")
        rows.append((cells[0], _name(cells[1]), cells[2]))
    return rows


def _mapping(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise AllergyFileError(f"{where}: expected a mapping")
    return value


def merge_allergy_document(
    doc: Mapping[str, Any], allergy: Mapping[str, Any], memberships: list[tuple[str, str, str]]
) -> dict[str, Any]:
    """The vocabulary document with the allergy classes added: each class and side-chain group a
    class (unless the vocabulary already defines it: its definition wins, the memberships add up),
    each membership on its ingredient (a substance the vocabulary lacks becomes an ingredient),
    each INN name an alias, each class's allergen group an allergen (replacing a vocabulary
    allergen of the same name)."""
    merged: dict[str, Any] = copy.deepcopy(dict(doc))
    classes = merged.setdefault("classes", {}) or {}
    merged["classes"] = classes
    ingredients = merged.setdefault("ingredients", {}) or {}
    merged["ingredients"] = ingredients
    aliases = merged.setdefault("aliases", {}) or {}
    merged["aliases"] = aliases
    allergens = merged.setdefault("allergens", {}) or {}
    merged["allergens"] = allergens

    defined = {**_mapping(allergy.get("classes"), "classes"), **_mapping(allergy.get("side_chains"), "side_chains")}
    for cid, spec in defined.items():
        spec = _mapping(spec, f"classes.{cid}")
        if cid not in classes:
            classes[cid] = {"name": str(spec.get("name", cid)), "kind": "CLINICAL", "source": spec.get("source")}
        classes[cid] = entry = dict(classes[cid] or {})
        # The FDA classes the allergy class is read from, unless the vocabulary states its own.
        if spec.get("fda") and "fda" not in entry:
            entry["fda"] = list(spec["fda"])

    by_name = {_name(k): k for k in ingredients}
    for cid, ingredient, source in memberships:
        if cid not in classes:
            raise AllergyFileError(f"{MEMBERSHIP_FILE}: class {cid!r} is not defined in {ALLERGY_FILE}")
        key = by_name.get(ingredient)
        if key is None:
            key = ingredient
            ingredients[key] = {"classes": []}
            by_name[ingredient] = key
        if classes[cid].get("fda") and not source.startswith("fda_ndc"):
            # a curated (or included) member of a class read from FDA: its source is the row's
            outside = classes[cid]["outside_fda"] = dict(classes[cid].get("outside_fda") or {})
            outside.setdefault(key, source)
        entry = ingredients[key] = dict(ingredients[key] or {})
        listed = list(entry.get("classes") or [])
        if cid not in listed:
            listed.append(cid)
        entry["classes"] = listed

    known = set(by_name) | {_name(a) for a in aliases}
    for written, target in _mapping(allergy.get("names"), "names").items():
        alias, target_name = _name(written), _name(target)
        # Only names of the classes' members: an alias must point to an ingredient the vocabulary holds.
        if alias != target_name and alias not in known and target_name in by_name:
            aliases[alias] = [target_name]
            known.add(alias)

    for cid, spec in _mapping(allergy.get("classes"), "classes").items():
        group = _mapping(_mapping(spec, f"classes.{cid}").get("allergen"), f"classes.{cid}.allergen")
        if not group and "allergen" not in spec:
            continue
        name = _name(group.get("name") or cid.replace("_", " "))
        allergens[name] = {
            "category": "DRUG",
            "classes": [cid],
            "synonyms": list(group.get("synonyms") or []),
            "cross": list(group.get("cross") or []),
            "member_grade": group.get("member_grade"),
            "note": group.get("note") or "",
        }
    for name, spec in _mapping(allergy.get("allergens"), "allergens").items():
        allergens[_name(name)] = dict(_mapping(spec, f"allergens.{name}"))
    return merged
