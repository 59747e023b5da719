"""Build mechanism_pairs.csv from mechanisms.yaml: class-level interactions expanded to ingredient pairs.

    PYTHONPATH=. python rules/knowledge/build_mechanisms.py            # write mechanism_pairs.csv
    PYTHONPATH=. python rules/knowledge/build_mechanisms.py --check    # exit 1 if the shipped file is stale

Every set member is resolved through the drug vocabulary (vocabulary.yaml and rxnorm.tsv in this folder),
so a pair's two ends are ingredient names exactly as the engine knows them; a name the vocabulary does
not resolve to one ingredient is listed and left out, never guessed, and no code is written anywhere.
One row per unordered ingredient pair: when several groups produce the same pair, the highest grade
speaks (its mechanism and management) and the others are named in the description and cited in the
source. Deterministic: the same inputs give the same bytes.
"""

from __future__ import annotations

import argparse
import csv
import io
import sys
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from engine.knowledge import Vocabulary, load_concept_files, vocabulary_from_document
from engine.model import EvidenceLevel, Severity

HERE = Path(__file__).resolve().parent
SOURCE_FILE = HERE / "mechanisms.yaml"
OUTPUT_FILE = HERE / "mechanism_pairs.csv"
HEADER = (
    "drug_a", "drug_b", "severity", "description", "recommendation", "interaction_type", "evidence_level",
    "avoid_combination", "source",
)
PANEL_SOURCE = "onc"  # groups citing the ONC panel keep every member pair, intended combinations included


class BuildError(ValueError):
    pass


@dataclass(frozen=True)
class Hit:
    order: int  # the group's position in the file: ties go to the earlier group
    group: str
    title: str
    severity: Severity
    evidence: EvidenceLevel
    kind: str
    mechanism: str
    management: str
    sources: tuple[str, ...]  # citation texts
    why: str = ""  # set when a member-specific grade applied


def _vocabulary(directory: Path) -> Vocabulary:
    doc = yaml.safe_load((directory / "vocabulary.yaml").read_text(encoding="utf-8"))
    concepts, ndc = load_concept_files(directory)
    return vocabulary_from_document(doc, concepts=concepts, ndc=ndc)


class Resolver:
    def __init__(self, vocabulary: Vocabulary) -> None:
        self.vocabulary = vocabulary
        self.left_out: dict[str, str] = {}  # name -> why

    def one(self, name: str) -> str | None:
        drug = self.vocabulary.normalize_drug(name)
        if drug.status != "resolved" or len(drug.ingredients) != 1:
            hint = f" (did you mean {', '.join(drug.suggestions)}?)" if drug.suggestions else ""
            what = drug.status if len(drug.ingredients) <= 1 else f"{len(drug.ingredients)} ingredients"
            self.left_out[name] = f"{what}{hint}"
            return None
        return drug.ingredients[0]

    def many(self, names: Sequence[str]) -> tuple[str, ...]:
        found = (self.one(n) for n in names)
        return tuple(sorted({f for f in found if f is not None}))


def _names(value: Any, where: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise BuildError(f"{where}: expected a list of ingredient names")
    return [v.strip().lower() for v in value]


def _severity(value: Any, where: str) -> Severity:
    try:
        return Severity[str(value).upper()]
    except KeyError:
        raise BuildError(f"{where}: {value!r} is not INFO, LOW, MODERATE, HIGH or CRITICAL") from None


def _evidence(value: Any, where: str) -> EvidenceLevel:
    try:
        return EvidenceLevel[str(value).upper()]
    except KeyError:
        raise BuildError(f"{where}: {value!r} is not an evidence level") from None


def _citations(keys: Any, sources: Mapping[str, str], where: str) -> tuple[str, ...]:
    if not isinstance(keys, list) or not keys:
        raise BuildError(f"{where}: a list of source keys is required")
    missing = [k for k in keys if k not in sources]
    if missing:
        raise BuildError(f"{where}: unknown source key(s) {', '.join(map(str, missing))}")
    return tuple(sources[k] for k in keys)


def build(directory: Path = HERE) -> tuple[str, dict[str, Any]]:
    """The CSV text and the build's figures."""
    doc = yaml.safe_load((directory / SOURCE_FILE.name).read_text(encoding="utf-8"))
    if not isinstance(doc, dict):
        raise BuildError("mechanisms.yaml: expected a mapping")
    sources = {str(k): str(v) for k, v in (doc.get("sources") or {}).items()}
    resolver = Resolver(_vocabulary(directory))

    sets: dict[str, tuple[str, ...]] = {}
    for name, spec in (doc.get("sets") or {}).items():
        where = f"sets.{name}"
        if not isinstance(spec, dict) or spec.get("source") not in sources:
            raise BuildError(f"{where}: needs members and a known source key")
        sets[str(name)] = resolver.many(_names(spec.get("members"), f"{where}.members"))

    def members(value: Any, where: str) -> tuple[str, ...]:
        if isinstance(value, str):
            if value not in sets:
                raise BuildError(f"{where}: no set {value!r}")
            return sets[value]
        return resolver.many(_names(value, where))

    intended: set[frozenset[str]] = set()
    for i, spec in enumerate(doc.get("intended") or ()):
        where = f"intended[{i}]"
        if not isinstance(spec, dict) or not str(spec.get("why", "")).strip():
            raise BuildError(f"{where}: needs a, b and why")
        for x in members(spec.get("a"), f"{where}.a"):
            for y in members(spec.get("b"), f"{where}.b"):
                intended.add(frozenset((x, y)))

    hits: dict[tuple[str, str], list[Hit]] = defaultdict(list)
    per_group: dict[str, int] = {}
    skipped_intended = 0
    seen_ids: set[str] = set()
    for order, spec in enumerate(doc.get("groups") or ()):
        gid = str(spec.get("id", ""))
        where = f"groups[{order}] {gid}"
        if not gid or gid in seen_ids:
            raise BuildError(f"{where}: every group needs a unique id")
        seen_ids.add(gid)
        for key in ("title", "mechanism", "management", "type"):
            if not str(spec.get(key, "")).strip():
                raise BuildError(f"{where}: {key} is required")
        side_a = members(spec.get("a"), f"{where}.a")
        side_b = members(spec.get("b"), f"{where}.b")
        symmetric = spec.get("a") == spec.get("b")
        default = _severity(spec.get("severity"), f"{where}.severity")
        evidence = _evidence(spec.get("evidence"), f"{where}.evidence")
        group_sources = _citations(spec.get("source"), sources, f"{where}.source")
        panel = PANEL_SOURCE in spec.get("source", ())
        grades = []
        for j, grade in enumerate(spec.get("grades") or ()):
            gw = f"{where}.grades[{j}]"
            if not str(grade.get("why", "")).strip():
                raise BuildError(f"{gw}: why is required")
            grades.append(
                (
                    set(members(grade["a"], f"{gw}.a")) if "a" in grade else None,
                    set(members(grade["b"], f"{gw}.b")) if "b" in grade else None,
                    _severity(grade.get("severity"), f"{gw}.severity"),
                    str(grade["why"]).strip(),
                    _citations(grade.get("source"), sources, f"{gw}.source"),
                    str(grade.get("management", "")).strip(),
                )
            )
        count = 0
        for x in side_a:
            for y in side_b:
                if x == y or (symmetric and x > y):
                    continue
                if not panel and frozenset((x, y)) in intended:
                    skipped_intended += 1
                    continue
                matched = [
                    g
                    for g in grades
                    for first, second in ((x, y), (y, x)) if symmetric or (first, second) == (x, y)
                    if (g[0] is None or first in g[0]) and (g[1] is None or second in g[1])
                ]
                severity, why, cited, management = default, "", group_sources, str(spec["management"]).strip()
                if matched:
                    grade = max(matched, key=lambda g: g[2])
                    severity, why = grade[2], grade[3]
                    cited = tuple(dict.fromkeys((*grade[4], *group_sources)))
                    management = grade[5] or management
                pair = (x, y) if x < y else (y, x)
                hits[pair].append(
                    Hit(
                        order,
                        gid,
                        str(spec["title"]).strip(),
                        severity,
                        evidence,
                        str(spec["type"]).strip().upper(),
                        " ".join(str(spec["mechanism"]).split()),
                        management,
                        cited,
                        why,
                    )
                )
                count += 1
        per_group[gid] = count

    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(HEADER)
    by_severity: dict[str, int] = defaultdict(int)
    for (x, y), found in sorted(hits.items()):
        ranked = sorted(found, key=lambda h: (-h.severity, -h.evidence, h.order))
        top = ranked[0]
        description = top.mechanism
        if top.why:
            description += f" Graded {top.severity.name.lower()}: {top.why}."
        others = list(dict.fromkeys(h.title for h in ranked[1:] if h.title != top.title))
        if others:
            description += " Also: " + "; ".join(others) + "."
        cited = tuple(dict.fromkeys(c for h in ranked for c in h.sources))
        writer.writerow(
            (
                x,
                y,
                top.severity.name,
                description,
                top.management,
                top.kind,
                top.evidence.name,
                "true" if top.severity is Severity.CRITICAL else "false",
                " | ".join(cited),
            )
        )
        by_severity[top.severity.name] += 1
    figures = {
        "pairs": len(hits),
        "by_severity": dict(sorted(by_severity.items())),
        "per_group": per_group,
        "left_out": dict(sorted(resolver.left_out.items())),
        "skipped_intended": skipped_intended,
        "sets": {k: len(v) for k, v in sets.items()},
    }
    return out.getvalue(), figures


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if mechanism_pairs.csv differs from a fresh build")
    parser.add_argument("--dir", default=str(HERE), help="knowledge folder (default: this script's folder)")
    args = parser.parse_args(argv)
    directory = Path(args.dir)
    try:
        text, figures = build(directory)
    except BuildError as exc:
        print(f"build_mechanisms: {exc}", file=sys.stderr)
        return 2
    target = directory / OUTPUT_FILE.name
    print(f"{figures['pairs']:,} ingredient pairs: {figures['by_severity']}")
    print(f"intended combinations skipped: {figures['skipped_intended']}")
    for gid, n in figures["per_group"].items():
        print(f"  {gid}: {n}")
    if figures["left_out"]:
        print(f"{len(figures['left_out'])} names not in the vocabulary, left out:")
        for name, why in figures["left_out"].items():
            print(f"  {name}: {why}")
    if args.check:
        current = target.read_text(encoding="utf-8") if target.is_file() else ""
        if current != text:
            print(f"{target} is stale: run rules/knowledge/build_mechanisms.py", file=sys.stderr)
            return 1
        print(f"{target} is up to date")
        return 0
    target.write_text(text, encoding="utf-8")
    print(f"wrote {target} ({len(text.encode()):,} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
