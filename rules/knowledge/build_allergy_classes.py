"""Builds the drug allergy class memberships (allergy_classes.tsv) from FDA's pharmacologic classes.

    python rules/knowledge/build_allergy_classes.py [--test-set tests/data/allergy_class_members.tsv]

Inputs, all in this folder: `allergy.yaml` (the classes, the FDA classes each takes, exclusions,
curated members with their sources, INN/FDA -> vocabulary names, R1 side-chain groups),
`pharm_classes.tsv` (FDA's EPC/MoA/CS/PE classes of each ingredient, built by
build_pharm_classes.py from the FDA NDC Directory), and the vocabulary (vocabulary.yaml and rxnorm.tsv,
read without any allergy table, so the build never reads its own output).

Output: one membership a line, `class<TAB>ingredient<TAB>source`, sorted; `source` is the FDA class the
membership was read from (`fda_ndc Penicillin-class Antibacterial [EPC]`), or the curated entry's
source key and reason, or the side-chain table, or `includes <class>`. A curated member the vocabulary
does not know becomes an ingredient of its own: it is then recognised, and screened, instead of being
an unknown medication. With --test-set, also the recall test set: the allergy as a clinician writes the
class, and each member as FDA's NDC Directory names the substance (salt forms included), or as the
curated entry names it.

Deterministic; standard library and PyYAML only; no code (RXCUI, NDC, UNII) is read or written.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent))

from engine.knowledge import (  # noqa: E402 - the repository root is put on the path first
    PHARM_CLASS_COLUMNS,
    PHARM_CLASS_FILE,
    clean_name,
    load_concept_files,
    vocabulary_from_document,
)

NDC_RELEASE = "FDA NDC Directory 2019-04-29"
_SELECTOR = re.compile(r"^(?P<name>.+?) \[(?P<type>EPC|MoA|CS|PE)\]$")
_WRITTEN = re.compile(
    r"^fda_ndc (?P<names>.+?)(?:; not in the vocabulary)? \((?:by difference, )?\d+ (?:combination )?products\)$"
)


def _vocabulary(directory: Path) -> Any:
    doc = yaml.safe_load((directory / "vocabulary.yaml").read_text(encoding="utf-8"))
    concepts, ndc = load_concept_files(directory)
    return vocabulary_from_document(doc, concepts=concepts, ndc=ndc)


def read_pharm_classes(path: Path) -> dict[tuple[str, str], list[tuple[str, list[str]]]]:
    """(type, class name) -> [(ingredient, FDA substance names as written)], from pharm_classes.tsv."""
    lines = path.read_text(encoding="utf-8").splitlines()
    if tuple(lines[0].split("\t")) != PHARM_CLASS_COLUMNS:
        raise SystemExit(f"{path}: unexpected header")
    out: dict[tuple[str, str], list[tuple[str, list[str]]]] = defaultdict(list)
    for line in lines[1:]:
        ingredient, kind, name, source = line.split("\t")
        match = _WRITTEN.match(source)
        if match is None:
            raise SystemExit(f"{path}: unreadable source {source!r}")
        out[(kind, name)].append((ingredient, [n.strip() for n in match["names"].split(";") if n.strip()]))
    return out


class Resolver:
    def __init__(self, vocabulary: Any, names: dict[str, str]) -> None:
        self.vocabulary = vocabulary
        self.names = {clean_name(k): clean_name(v) for k, v in names.items()}
        self.created: dict[str, str] = {}  # new ingredient -> the name it was read as
        self.review: list[str] = []

    def ingredient(self, written: str) -> str:
        name = clean_name(written)
        target = self.names.get(name, name)
        drug = self.vocabulary.normalize_drug(target)
        if drug.recognised and len(drug.ingredients) == 1:
            return str(drug.ingredients[0])
        if target not in self.created:
            self.created[target] = name
            if drug.suggestions:
                offered = ", ".join(drug.suggestions)
                self.review.append(f"{name!r} -> new ingredient {target!r} (vocabulary suggests {offered})")
        return target


def build(
    pharm: dict[tuple[str, str], list[tuple[str, list[str]]]], spec: dict[str, Any], vocabulary: Any
) -> tuple[list[tuple[str, str, str]], list[tuple[str, str, str, str]], Resolver]:
    resolver = Resolver(vocabulary, spec.get("names") or {})
    members: dict[str, dict[str, str]] = defaultdict(dict)  # class -> ingredient -> source
    written: dict[str, list[tuple[str, str, str]]] = defaultdict(list)  # class -> (name as written, fda class, source)
    classes = spec["classes"]
    for cid, cls in classes.items():
        excluded = {clean_name(k) for k in (cls.get("exclude") or {})}
        seen_excluded: set[str] = set()
        for selector in cls.get("fda") or ():
            match = _SELECTOR.match(selector)
            if match is None:
                raise SystemExit(f"{cid}: fda class {selector!r} is not 'Name [EPC|MoA|CS|PE]'")
            holders = pharm.get((match["type"], match["name"]))
            if not holders:
                raise SystemExit(f"{cid}: no ingredient has the FDA class {selector!r}")
            for name, as_written in holders:
                if name in excluded:
                    seen_excluded.add(name)
                    continue
                ingredient = resolver.ingredient(name)
                members[cid].setdefault(ingredient, f"fda_ndc {selector}")
                for fda_name in as_written:
                    written[cid].append((clean_name(fda_name), selector, f"{NDC_RELEASE}: {selector}"))
        for name, reason in (cls.get("members") or {}).items():
            ingredient = resolver.ingredient(name)
            members[cid].setdefault(ingredient, f"curated: {reason}")
            written[cid].append((clean_name(name), "", f"curated ({reason})"))
        for name in sorted(excluded - seen_excluded):
            if cls.get("fda"):
                print(f"warning: {cid}: excluded {name!r} is not in its FDA classes", file=sys.stderr)

    def expand(cid: str, seen: tuple[str, ...] = ()) -> dict[str, str]:
        if cid in seen:
            raise SystemExit(f"{cid}: includes itself")
        found = dict(members.get(cid, {}))
        for child in classes[cid].get("includes") or ():
            for ingredient in expand(child, (*seen, cid)):
                found.setdefault(ingredient, f"includes {child}")
        return found

    def members_written(c: str) -> list[tuple[str, str, str]]:
        out = list(written.get(c, ()))
        for child in classes[c].get("includes") or ():
            out.extend(members_written(child))
        return out

    rows: list[tuple[str, str, str]] = []
    tests: list[tuple[str, str, str, str]] = []
    for cid, cls in classes.items():
        for ingredient, source in expand(cid).items():
            rows.append((cid, ingredient, source))
        allergen = cls.get("allergen") or {}
        text = (allergen.get("synonyms") or [allergen.get("name") or cid.replace("_", " ")])[0]
        for name, fda_class, source in members_written(cid):
            tests.append((text, name, fda_class, source))
    for gid, group in (spec.get("side_chains") or {}).items():
        for name in group["members"]:
            rows.append((gid, resolver.ingredient(name), f"side chain ({group['source']})"))
    return sorted(set(rows)), sorted(set(tests)), resolver


TEST_SET_HEADER = (
    "# Recall test set for the drug allergy classes, written by rules/knowledge/build_allergy_classes.py.\n"
    f"# Members come from FDA's pharmacologic class indexing ({NDC_RELEASE}, PHARM_CLASSES column,\n"
    "# US federal work, public domain), each named as the NDC Directory names the substance (salt forms\n"
    "# included), or from the curated members of allergy.yaml (source column: their citation).\n"
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, default=HERE, help="the knowledge folder (default: this script's)")
    parser.add_argument("--test-set", type=Path, help="also write the recall test set here")
    args = parser.parse_args(argv)
    spec = yaml.safe_load((args.dir / "allergy.yaml").read_text(encoding="utf-8"))
    pharm = read_pharm_classes(args.dir / PHARM_CLASS_FILE)
    rows, tests, resolver = build(pharm, spec, _vocabulary(args.dir))
    out = args.dir / "allergy_classes.tsv"
    with out.open("w", encoding="utf-8", newline="") as handle:
        handle.write("class\tingredient\tsource\n")
        for membership in rows:
            handle.write("\t".join(membership) + "\n")
    if args.test_set:
        with args.test_set.open("w", encoding="utf-8", newline="") as handle:
            handle.write(TEST_SET_HEADER)
            handle.write("allergy\tmember\tfda_class\tsource\n")
            for case in tests:
                handle.write("\t".join(case) + "\n")
    by_class: dict[str, int] = defaultdict(int)
    for cid, _, _ in rows:
        by_class[cid] += 1
    for cid in sorted(by_class):
        print(f"{cid:34} {by_class[cid]:4} members")
    print(f"{len(rows)} memberships, {len(resolver.created)} substances new to the vocabulary, {len(tests)} test rows")
    for line in resolver.review:
        print(f"review: {line}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
