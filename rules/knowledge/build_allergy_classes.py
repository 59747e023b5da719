"""Builds the drug allergy class memberships (allergy_classes.tsv) from the ATC classification.

    python rules/knowledge/build_allergy_classes.py --atc "WHO ATC-DDD 2026-04-25.csv" \
        [--test-set tests/data/allergy_class_members.tsv]

Inputs: `allergy.yaml` beside this script (the classes, their ATC groups, exclusions, curated
members, INN -> US names, R1 side-chain groups), the vocabulary of this folder (vocabulary.yaml and
rxnorm.tsv, read without any allergy table, so the build does not read its own output), and the ATC
index as a CSV with the columns atc_code,atc_name (the snapshot named in allergy.yaml `sources.atc`).

Output: one membership a line, `class<TAB>ingredient<TAB>source`, sorted; `source` is the ATC code
the membership was read from, or the curated entry's reason, or the side-chain table. A substance the
vocabulary does not know becomes an ingredient of its own (by its US name where `names` gives one):
it is then recognised, and screened, instead of being an unknown medication. With --test-set, also
the recall test set: the allergy as a clinician writes the class, and each member as the
classification names it.

Deterministic; standard library and PyYAML only; no code (RXCUI, NDC) is read or written.
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent))

from engine.knowledge import (  # noqa: E402 - the repository root is put on the path first
    clean_name,
    load_concept_files,
    vocabulary_from_document,
)

MIXTURE_WORDS = (" and ", "combination", ", ")


def _vocabulary(directory: Path) -> Any:
    doc = yaml.safe_load((directory / "vocabulary.yaml").read_text(encoding="utf-8"))
    concepts, ndc = load_concept_files(directory)
    return vocabulary_from_document(doc, concepts=concepts, ndc=ndc)


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


def build(atc_rows: list[tuple[str, str]], spec: dict[str, Any], vocabulary: Any) -> tuple[
    list[tuple[str, str, str]], list[tuple[str, str, str, str]], Resolver
]:
    resolver = Resolver(vocabulary, spec.get("names") or {})
    members: dict[str, dict[str, str]] = defaultdict(dict)  # class -> ingredient -> source
    written: dict[str, list[tuple[str, str, str]]] = defaultdict(list)  # class -> (name as written, code, source)
    classes = spec["classes"]
    for cid, cls in classes.items():
        excluded = {clean_name(k) for k in (cls.get("exclude") or {})}
        for prefix in cls.get("atc") or ():
            for code, name in atc_rows:
                if len(code) != 7 or not code.startswith(prefix):
                    continue
                cname = clean_name(name)
                if cname in excluded or any(w in f" {cname} " for w in MIXTURE_WORDS):
                    continue
                ingredient = resolver.ingredient(name)
                members[cid].setdefault(ingredient, f"atc {code}")
                written[cid].append((name, code, "WHO ATC/DDD Index 2026-04-25"))
        for name, reason in (cls.get("members") or {}).items():
            ingredient = resolver.ingredient(name)
            members[cid].setdefault(ingredient, f"curated: {reason}")
            written[cid].append((name, "", f"curated ({cls.get('source', '')}): {reason}"))
        for excluded_name in excluded:
            if excluded_name not in {clean_name(n) for _, n in atc_rows}:
                print(f"warning: {cid}: excluded {excluded_name!r} is not in the classification", file=sys.stderr)

    def expand(cid: str, seen: tuple[str, ...] = ()) -> dict[str, str]:
        if cid in seen:
            raise SystemExit(f"{cid}: includes itself")
        found = dict(members.get(cid, {}))
        for child in classes[cid].get("includes") or ():
            for ingredient in expand(child, (*seen, cid)):
                found.setdefault(ingredient, f"includes {child}")
        return found

    rows: list[tuple[str, str, str]] = []
    tests: list[tuple[str, str, str, str]] = []
    for cid, cls in classes.items():
        for ingredient, source in expand(cid).items():
            rows.append((cid, ingredient, source))
        allergen = cls.get("allergen") or {}
        text = (allergen.get("synonyms") or [allergen.get("name") or cid.replace("_", " ")])[0]

        def members_written(c: str) -> list[tuple[str, str, str]]:
            out = list(written.get(c, ()))
            for child in classes[c].get("includes") or ():
                out.extend(members_written(child))
            return out

        for name, code, source in members_written(cid):
            tests.append((text, name, code, source))
    for gid, group in (spec.get("side_chains") or {}).items():
        for name in group["members"]:
            rows.append((gid, resolver.ingredient(name), f"side chain ({group['source']})"))
    rows = sorted(set(rows))
    tests = sorted(set(tests))
    return rows, tests, resolver


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--atc", type=Path, required=True, help="the ATC index CSV (atc_code,atc_name,...)")
    parser.add_argument("--dir", type=Path, default=HERE, help="the knowledge folder (default: this script's)")
    parser.add_argument("--test-set", type=Path, help="also write the recall test set here")
    args = parser.parse_args(argv)
    spec = yaml.safe_load((args.dir / "allergy.yaml").read_text(encoding="utf-8"))
    with args.atc.open(encoding="utf-8", newline="") as handle:
        atc_rows = [(r["atc_code"].strip(), r["atc_name"].strip()) for r in csv.DictReader(handle)]
    rows, tests, resolver = build(atc_rows, spec, _vocabulary(args.dir))
    out = args.dir / "allergy_classes.tsv"
    with out.open("w", encoding="utf-8", newline="") as handle:
        handle.write("class\tingredient\tsource\n")
        for membership in rows:
            handle.write("\t".join(membership) + "\n")
    if args.test_set:
        with args.test_set.open("w", encoding="utf-8", newline="") as handle:
            handle.write("allergy\tmember\tatc_code\tsource\n")
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
