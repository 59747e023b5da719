#!/usr/bin/env python3
"""Builds the shipped drug vocabulary (rules/knowledge/rxnorm.tsv, rxnorm_ndc.tsv.gz, rxnorm.version)
from public source files. Python 3.11 standard library only; the same inputs give byte-identical outputs.

    python3 rules/knowledge/build_rxnorm.py --source-dir /path/to/sources

The source directory holds (see rules/knowledge/SOURCES.md, section "RxNorm concept table", for where
each comes from and its licence):

  rxnorm-cpc/*.json          per-letter JSON of RxNorm Current Prescribable Content (SAB=RXNORM, public
                             domain): one list of ingredient records (TTY IN, PIN or MIN) each, with
                             their SCDCs -> SCDs -> SBDs (-> BNs), GPCKs, BPCKs and NDCs
  rxnorm-cpc/Readme_Full_Prescribe_*.txt   the release's readme (gives the release date)
  cpic/*.sql                 CPIC database migrations (CC0): the `drug` table, whose rxnormid column
                             gives ingredient-level RxNorm codes; used only for codes the RxNorm
                             release above does not have
  ohdsi-phl/*.json           OHDSI Phenotype Library cohort definitions (Apache-2.0): their concept sets
                             name OMOP Standardized Vocabulary concepts; the RxNorm ones of class
                             Ingredient carry RxNorm's RXCUI as CONCEPT_CODE and RxNorm's name as
                             CONCEPT_NAME; used only for codes neither source above has (optional)

Nothing here types a code: every RXCUI and NDC is read from a source row. A concept whose ingredients
cannot be derived from the source's structure is left out and counted.
"""

from __future__ import annotations

import argparse
import difflib
import glob
import gzip
import hashlib
import io
import json
import os
import re
import sys
from collections import Counter, defaultdict

COLUMNS = ("system", "code", "tty", "name", "ingredients", "product", "strength", "dose_form", "unii", "active", "source")
TTY_ORDER = ("IN", "PIN", "MIN", "BN", "SCD", "SBD", "GPCK", "BPCK")
SRC_CPC = "rxnorm_cpc"
SRC_CPIC = "cpic"
SRC_OHDSI = "ohdsi_phl"

HERE = os.path.dirname(os.path.abspath(__file__))


def log(message: str = "") -> None:
    print(message, file=sys.stdout)


def numeric(code: str) -> tuple[int, str]:
    return (int(code), code) if code.isdigit() else (1 << 62, code)


def ids(codes) -> str:
    return ",".join(sorted(set(codes), key=numeric))


# --------------------------------------------------------------------------------------------------
# RxNorm Current Prescribable Content (per-letter JSON)


class Cpc:
    def __init__(self) -> None:
        self.names: dict[str, str] = {}  # rxcui -> name (all concepts seen)
        self.ttys: dict[str, set[str]] = defaultdict(set)  # rxcui -> TTYs seen
        self.name_conflicts: list[tuple[str, str, str]] = []
        self.top: dict[str, dict] = {}  # IN/PIN/MIN rxcui -> {tty, name, unii}
        self.top_scdcs: dict[str, set[str]] = defaultdict(set)
        self.scdc_in: dict[str, set[str]] = defaultdict(set)  # SCDC -> IN rxcuis (IN records only)
        self.scd_scdcs: dict[str, set[str]] = defaultdict(set)
        self.scd_sbds: dict[str, set[str]] = defaultdict(set)
        self.sbd_scds: dict[str, set[str]] = defaultdict(set)
        self.sbd_bns: dict[str, set[str]] = defaultdict(set)
        self.bn_sbds: dict[str, set[str]] = defaultdict(set)
        self.pack_scds: dict[str, set[str]] = defaultdict(set)
        self.ndcs: dict[str, set[str]] = defaultdict(set)  # product rxcui -> NDCs
        self.files: list[str] = []

    def see(self, rxcui: str, tty: str, name: str) -> None:
        if not rxcui or not rxcui.isdigit():
            raise SystemExit(f"bad RXCUI {rxcui!r} ({name!r})")
        name = name.strip()
        old = self.names.get(rxcui)
        if old is None:
            self.names[rxcui] = name
        elif old != name:
            self.name_conflicts.append((rxcui, old, name))
        self.ttys[rxcui].add(tty)

    def load(self, path: str) -> None:
        self.files.append(os.path.basename(path))
        with open(path, encoding="utf-8") as handle:
            records = json.load(handle)
        for rec in records:
            tty, cui = rec["TTY"], rec["RXCUI"]
            self.see(cui, tty, rec["Name"])
            self.top[cui] = {"tty": tty, "name": rec["Name"].strip(), "unii": (rec.get("UNII") or "").strip()}
            for scdc in rec.get("SCDCs") or ():
                c = scdc["RXCUI"]
                self.see(c, "SCDC", scdc["Name"])
                self.top_scdcs[cui].add(c)
                if tty == "IN":
                    self.scdc_in[c].add(cui)
                for scd in scdc.get("SCDs") or ():
                    s = scd["RXCUI"]
                    self.see(s, "SCD", scd["Name"])
                    self.scd_scdcs[s].add(c)
                    self.ndcs[s].update(scd.get("NDCs") or ())
                    for key in ("GPCKs", "BPCKs"):
                        for pack in scd.get(key) or ():
                            p = pack["RXCUI"]
                            self.see(p, pack["TTY"], pack["Name"])
                            self.pack_scds[p].add(s)
                            self.ndcs[p].update(pack.get("NDCs") or ())
                    for sbd in scd.get("SBDs") or ():
                        b = sbd["RXCUI"]
                        self.see(b, "SBD", sbd["Name"])
                        self.scd_sbds[s].add(b)
                        self.sbd_scds[b].add(s)
                        self.ndcs[b].update(sbd.get("NDCs") or ())
                        for bn in sbd.get("BNs") or ():
                            n = bn["RXCUI"]
                            self.see(n, "BN", bn["Name"])
                            self.sbd_bns[b].add(n)
                            self.bn_sbds[n].add(b)


def release_date(cpc_dir: str) -> str:
    for path in sorted(glob.glob(os.path.join(cpc_dir, "Readme_Full_Prescribe_*.txt"))):
        with open(path, encoding="utf-8", errors="replace") as handle:
            text = handle.read()
        m = re.search(r"RxNorm (\d{2})/(\d{2})/(\d{4}) Current Prescribable Content", text)
        if m:
            return f"{m.group(3)}-{m.group(1)}-{m.group(2)}"
    raise SystemExit(f"{cpc_dir}: no Readme_Full_Prescribe_*.txt naming the release date")


def strength_of(scdc_name: str) -> str | None:
    """An SCDC is '<ingredient> <number> <unit>': the strength is its last two words."""
    parts = scdc_name.rsplit(" ", 2)
    if len(parts) == 3 and re.fullmatch(r"\d[\d.,]*|\.\d+", parts[1]):
        return f"{parts[1]} {parts[2]}"
    return None


def split_scd_name(name: str, comps: dict[str, str]) -> tuple[list[str], str, str] | None:
    """Splits an SCD name '[<qualifier>] <scdc> / <scdc> ... <dose form>' along the names of the SCDCs
    the source links to it. Returns (ordered SCDC rxcuis, qualifier, dose form), or None when the name
    does not consist of exactly these SCDCs (a component is missing from the source)."""
    parts = name.split(" / ")
    if len(parts) != len(comps):
        return None
    by_name: dict[str, str] = {}
    for cui, comp in comps.items():
        if comp in by_name:
            return None
        by_name[comp] = cui
    ordered: list[str] = []
    qualifier = dose_form = ""
    used: set[str] = set()
    for i, part in enumerate(parts):
        first, last = i == 0, i == len(parts) - 1
        match = None
        for comp in sorted(by_name, key=len, reverse=True):
            if by_name[comp] in used:
                continue
            if first and last:
                padded = " " + part
                k = padded.find(" " + comp + " ")
                if k >= 0:
                    match, qualifier, dose_form = comp, padded[:k].strip(), padded[k + 1 + len(comp):].strip()
            elif first:
                if part == comp or part.endswith(" " + comp):
                    match, qualifier = comp, part[: len(part) - len(comp)].strip()
            elif last:
                if part.startswith(comp + " "):
                    match, dose_form = comp, part[len(comp):].strip()
            elif part == comp:
                match = comp
            if match:
                break
        if not match:
            return None
        used.add(by_name[match])
        ordered.append(by_name[match])
    if not dose_form:
        return None
    return ordered, qualifier, dose_form


def pack_components(name: str) -> list[str] | None:
    """'{21 (A Oral Tablet) / 7 (B Oral Tablet) } Pack [Brand]' -> ['A Oral Tablet', 'B Oral Tablet']."""
    if not name.startswith("{"):
        return None
    depth, start, out, i = 0, -1, [], 1
    close = None
    while i < len(name):
        ch = name[i]
        if ch == "(":
            if depth == 0:
                start = i + 1
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth < 0:
                return None
            if depth == 0:
                out.append(name[start:i].strip())
        elif ch == "}" and depth == 0:
            close = i
            break
        i += 1
    if close is None or not out or not name[close:].startswith("} Pack"):
        return None
    return out


# --------------------------------------------------------------------------------------------------
# CPIC drug table (SQL migrations)

_INSERT = re.compile(r"insert\s+into\s+drug\s*\(([^)]*)\)\s*values\s*\((.*?)\)\s*(?:on\s+conflict[^;]*)?;", re.I)
_RENAME = re.compile(r"update\s+drug\s+set\s+name\s*=\s*'([^']*)'\s+where\s+name\s*=\s*'([^']*)'\s*;", re.I)


def _sql_values(text: str) -> list[str]:
    values, current, quoted, i = [], [], False, 0
    while i < len(text):
        ch = text[i]
        if quoted:
            if ch == "'" and text[i + 1: i + 2] == "'":
                current.append("'")
                i += 1
            elif ch == "'":
                quoted = False
            else:
                current.append(ch)
        elif ch == "'":
            quoted = True
        elif ch == ",":
            values.append("".join(current).strip())
            current = []
        else:
            current.append(ch)
        i += 1
    values.append("".join(current).strip())
    return values


def load_cpic(cpic_dir: str) -> tuple[dict[str, str], list[str]]:
    """rxnormid -> CPIC drug name, applying the migrations in version order."""
    def version(path: str) -> int:
        m = re.match(r"V(\d+)__", os.path.basename(path))
        return int(m.group(1)) if m else 1 << 30

    files = sorted(glob.glob(os.path.join(cpic_dir, "*.sql")), key=lambda p: (version(p), os.path.basename(p)))
    drugs: dict[str, dict[str, str]] = {}  # drugid -> row
    used: list[str] = []
    for path in files:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
        touched = False
        for m in re.finditer(r"^COPY\s+drug\s*\(([^)]*)\)\s+FROM\s+stdin;\n(.*?)^\\\.", text, re.I | re.M | re.S):
            cols = [c.strip().lower() for c in m.group(1).split(",")]
            for line in m.group(2).splitlines():
                if not line:
                    continue
                cells = [None if c == r"\N" else c for c in line.split("\t")]
                row = dict(zip(cols, cells))
                drugs[row["drugid"]] = row
                touched = True
        for m in _INSERT.finditer(text):
            cols = [c.strip().lower() for c in m.group(1).split(",")]
            row = dict(zip(cols, _sql_values(m.group(2))))
            drugs.setdefault(row["drugid"], row)  # "on conflict do nothing"
            touched = True
        for m in _RENAME.finditer(text):
            for row in drugs.values():
                if row.get("name") == m.group(2):
                    row["name"] = m.group(1)
                    touched = True
        if touched:
            used.append(os.path.basename(path))
    out: dict[str, str] = {}
    for row in drugs.values():
        code = (row.get("rxnormid") or "").strip()
        if code:
            if not code.isdigit():
                raise SystemExit(f"CPIC: bad rxnormid {code!r}")
            out[code] = (row.get("name") or "").strip()
    return out, used



# --------------------------------------------------------------------------------------------------
# OHDSI Phenotype Library cohort definitions (concept sets over the OMOP Standardized Vocabularies)


def load_ohdsi(ohdsi_dir: str) -> tuple[dict[str, str], dict[str, set[str]], int]:
    """RXCUI -> RxNorm ingredient name from the concept-set items of the cohort JSON files: items whose
    concept is VOCABULARY_ID RxNorm, CONCEPT_CLASS_ID Ingredient (OMOP's class for RxNorm TTY IN),
    STANDARD_CONCEPT S and INVALID_REASON V. Returns (code -> name, code -> files, files read). A code
    seen under names differing only in case takes the lower-case one (RxNorm's IN style) when present,
    else the first in sorted order; names differing otherwise stop the build."""
    names: dict[str, set[str]] = defaultdict(set)
    files: dict[str, set[str]] = defaultdict(set)
    paths = sorted(glob.glob(os.path.join(ohdsi_dir, "*.json")))
    for path in paths:
        with open(path, encoding="utf-8") as handle:
            doc = json.load(handle)
        for concept_set in doc.get("ConceptSets") or ():
            for item in (concept_set.get("expression") or {}).get("items") or ():
                c = item.get("concept") or {}
                if c.get("VOCABULARY_ID") != "RxNorm" or c.get("CONCEPT_CLASS_ID") != "Ingredient":
                    continue
                if c.get("STANDARD_CONCEPT") != "S" or c.get("INVALID_REASON") != "V":
                    continue
                code, name = str(c.get("CONCEPT_CODE") or "").strip(), str(c.get("CONCEPT_NAME") or "").strip()
                if not code.isdigit() or not name:
                    raise SystemExit(f"{path}: bad RxNorm ingredient concept {code!r} {name!r}")
                names[code].add(name)
                files[code].add(os.path.basename(path))
    out: dict[str, str] = {}
    for code, variants in names.items():
        if len({v.lower() for v in variants}) > 1:
            raise SystemExit(f"OHDSI: RXCUI {code} has names {sorted(variants)}")
        lower = [v for v in variants if v == v.lower()]
        out[code] = lower[0] if lower else sorted(variants)[0]
    return out, files, len(paths)

# --------------------------------------------------------------------------------------------------
# vocabulary.yaml ingredient names (a minimal reader for its `ingredients:` block)


def vocabulary_ingredients(path: str) -> list[str]:
    names: list[str] = []
    inside = False
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if re.match(r"^[A-Za-z_]+:", line):
                inside = line.startswith("ingredients:")
                continue
            if inside:
                m = re.match(r"^  ([^\s#][^:]*?)\s*:", line)
                if m:
                    names.append(m.group(1).strip().strip("'\""))
    return names


# --------------------------------------------------------------------------------------------------


def build(source_dir: str, out_dir: str, vocabulary: str | None) -> int:
    cpc_dir = os.path.join(source_dir, "rxnorm-cpc")
    cpic_dir = os.path.join(source_dir, "cpic")
    ohdsi_dir = os.path.join(source_dir, "ohdsi-phl")
    date = release_date(cpc_dir)
    cpc = Cpc()
    letter_files = sorted(glob.glob(os.path.join(cpc_dir, "*.json")))
    if not letter_files:
        raise SystemExit(f"{cpc_dir}: no *.json files")
    for path in letter_files:
        cpc.load(path)
    log(f"RxNorm CPC {date}: {len(letter_files)} files: {' '.join(cpc.files)}")
    expected = ["0-9.json"] + [f"{c}.json" for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZ"]
    missing_files = [f for f in expected if f not in cpc.files]
    if missing_files:
        log(f"  WARNING: letter files absent from the source: {' '.join(missing_files)}"
            " (ingredient records filed under these letters are missing)")

    dropped: Counter[str] = Counter()
    notes: list[str] = []
    rows: dict[str, dict] = {}  # rxcui -> row

    def add(code: str, tty: str, name: str, ingredients, *, strength="", dose_form="", unii="", source=SRC_CPC) -> None:
        if code in rows:
            raise SystemExit(f"RXCUI {code} emitted twice ({rows[code]['tty']} and {tty})")
        rows[code] = {
            "system": "rxnorm", "code": code, "tty": tty, "name": name, "ingredients": ids(ingredients),
            "product": "", "strength": strength, "dose_form": dose_form, "unii": unii, "active": "1", "source": source,
        }

    # RXCUIs the source gives two TTYs (e.g. a concept that is both an IN and a PIN record) are reported
    # and left out: the table needs one TTY per code.
    multi = {cui for cui, t in cpc.ttys.items() if len(t) > 1}
    for cui in sorted(multi, key=numeric):
        notes.append(f"RXCUI {cui} has TTYs {sorted(cpc.ttys[cui])} in the source; left out")
    for cui, old, new in cpc.name_conflicts:
        notes.append(f"RXCUI {cui} has two names in the source: {old!r} / {new!r} (first kept)")

    in_codes = {c for c, r in cpc.top.items() if r["tty"] == "IN" and c not in multi}
    for c, inset in cpc.scdc_in.items():
        if len(inset) > 1:
            notes.append(f"SCDC {c} ({cpc.names[c]}) belongs to {len(inset)} INs: {ids(inset)}")

    # IN
    for c in in_codes:
        r = cpc.top[c]
        add(c, "IN", r["name"], [c], unii=r["unii"])

    def ins_of_scdcs(scdcs) -> tuple[set[str], bool]:
        found: set[str] = set()
        complete = True
        for s in scdcs:
            got = cpc.scdc_in.get(s, set()) & in_codes
            if not got:
                complete = False
            found |= got
        return found, complete

    # PIN: the IN(s) of its SCDCs; exactly one expected
    for c, r in cpc.top.items():
        if r["tty"] != "PIN" or c in multi:
            continue
        found, complete = ins_of_scdcs(cpc.top_scdcs[c])
        if len(found) != 1 or not complete:
            dropped["PIN (IN not in the source)" if not found else "PIN (not exactly one IN)"] += 1
            continue
        add(c, "PIN", r["name"], found, unii=r["unii"])

    # MIN: the INs of its SCDCs; their names must be exactly the MIN name's parts
    for c, r in cpc.top.items():
        if r["tty"] != "MIN" or c in multi:
            continue
        found, complete = ins_of_scdcs(cpc.top_scdcs[c])
        parts = sorted(p.strip() for p in r["name"].split(" / "))
        if not complete or sorted(cpc.top[i]["name"] for i in found) != parts:
            dropped["MIN (an ingredient not in the source)"] += 1
            continue
        add(c, "MIN", r["name"], found, unii=r["unii"])

    # SCD: its SCDCs must spell its whole name; ingredients are their INs
    scd_ok: dict[str, tuple[set[str], str, str]] = {}
    strength_failures = 0
    for s, scdcs in cpc.scd_scdcs.items():
        if s in multi:
            continue
        found, complete = ins_of_scdcs(scdcs)
        split = split_scd_name(cpc.names[s], {c: cpc.names[c] for c in scdcs}) if complete else None
        if split is None:
            dropped["SCD (a component's ingredient not in the source)"] += 1
            continue
        ordered, _qualifier, dose_form = split
        strengths = [strength_of(cpc.names[c]) for c in ordered]
        if any(x is None for x in strengths):
            strength_failures += 1
            strength = ""
        else:
            strength = " / ".join(strengths)  # type: ignore[arg-type]
        scd_ok[s] = (found, strength, dose_form)
        add(s, "SCD", cpc.names[s], found, strength=strength, dose_form=dose_form)
    if strength_failures:
        notes.append(f"{strength_failures} SCDs whose strength could not be read from their SCDC names (strength left empty)")

    # SBD: as its SCD
    sbd_ok: dict[str, set[str]] = {}
    for b, scds in cpc.sbd_scds.items():
        if b in multi:
            continue
        if len(scds) != 1 or not all(s in scd_ok for s in scds):
            dropped["SBD (its SCD left out)" if len(scds) == 1 else "SBD (not exactly one SCD)"] += 1
            continue
        (s,) = scds
        found, strength, dose_form = scd_ok[s]
        sbd_ok[b] = found
        add(b, "SBD", cpc.names[b], found, strength=strength, dose_form=dose_form)

    # BN: every SBD of the brand kept; ingredients are the union of theirs
    for n, sbds in cpc.bn_sbds.items():
        if n in multi:
            continue
        if not all(b in sbd_ok for b in sbds):
            dropped["BN (one of its SBDs left out)"] += 1
            continue
        found = set().union(*(sbd_ok[b] for b in sbds))
        add(n, "BN", cpc.names[n], found)

    # GPCK / BPCK: every drug named in the pack must be a kept SCD or SBD
    kept_by_name: dict[str, set[str]] = {}
    for code, row in rows.items():
        if row["tty"] in ("SCD", "SBD"):
            kept_by_name.setdefault(row["name"], set()).update(row["ingredients"].split(","))
    seen_names = {cpc.names[x] for x in list(cpc.scd_scdcs) + list(cpc.sbd_scds)}
    for p, scds in cpc.pack_scds.items():
        if p in multi:
            continue
        tty = next(iter(cpc.ttys[p]))
        comps = pack_components(cpc.names[p])
        if comps is None:
            dropped[f"{tty} (name not parsed)"] += 1
            continue
        if not all(s in scd_ok for s in scds) or not all(c in kept_by_name for c in comps):
            reason = "contains a drug left out" if all(c in seen_names for c in comps) else "contains a drug not in the source"
            dropped[f"{tty} ({reason})"] += 1
            continue
        found = set().union(*(scd_ok[s][0] for s in scds), *(kept_by_name[c] for c in comps))
        add(p, tty, cpc.names[p], found)

    # CPIC: ingredient codes the RxNorm release does not have
    cpic, cpic_files = load_cpic(cpic_dir) if os.path.isdir(cpic_dir) else ({}, [])
    cpic_added: list[tuple[str, str]] = []
    cpic_disagree: list[tuple[str, str, str, str]] = []
    for code, name in sorted(cpic.items(), key=lambda kv: numeric(kv[0])):
        if code in cpc.names:
            if code in rows and rows[code]["name"].lower() != name.lower():
                cpic_disagree.append((code, name, rows[code]["name"], rows[code]["tty"]))
            elif code not in rows and cpc.names[code].lower() != name.lower():
                cpic_disagree.append((code, name, cpc.names[code], "/".join(sorted(cpc.ttys[code]))))
            continue
        if "/" in name or not name:
            dropped["CPIC drug (a combination: ingredients not derivable)"] += 1
            notes.append(f"CPIC {code} {name!r}: combination, left out")
            continue
        cpic_added.append((code, name))
        add(code, "IN", name, [code], source=SRC_CPIC)
    cpic_in_cpc = Counter("/".join(sorted(cpc.ttys[c])) for c in cpic if c in cpc.names)

    # OHDSI: RxNorm ingredient codes neither the release nor CPIC has. Every code it shares with the
    # table must carry the same name there (a check of the source against the release itself).
    ohdsi, ohdsi_files, ohdsi_nfiles = load_ohdsi(ohdsi_dir) if os.path.isdir(ohdsi_dir) else ({}, {}, 0)
    ohdsi_added: list[tuple[str, str]] = []
    ohdsi_agree: Counter[str] = Counter()
    ohdsi_disagree: list[tuple[str, str, str]] = []
    in_name_code = {r["name"].lower(): c for c, r in rows.items() if r["tty"] == "IN"}
    for code, name in sorted(ohdsi.items(), key=lambda kv: numeric(kv[0])):
        if code in rows:
            if rows[code]["tty"] == "IN" and rows[code]["name"].lower() == name.lower():
                ohdsi_agree[rows[code]["source"]] += 1
            else:
                ohdsi_disagree.append((code, name, f"{rows[code]['tty']} {rows[code]['name']!r} ({rows[code]['source']})"))
            continue
        if code in cpc.names:
            ohdsi_disagree.append((code, name, f"{'/'.join(sorted(cpc.ttys[code]))} {cpc.names[code]!r} in the release, left out there"))
            continue
        if name.lower() in in_name_code:
            ohdsi_disagree.append((code, name, f"name already IN {in_name_code[name.lower()]}"))
            continue
        ohdsi_added.append((code, name))
        in_name_code[name.lower()] = code
        add(code, "IN", name, [code], source=SRC_OHDSI)

    # ------------------------------------------------------------------------------------------
    # NDC rows
    ndc_rows: dict[str, dict] = {}
    ndc_conflicts = 0
    ndc_dropped = 0
    for product, ndcs in cpc.ndcs.items():
        for ndc in ndcs:
            if not re.fullmatch(r"\d{11}", ndc):
                raise SystemExit(f"bad NDC {ndc!r} on {product}")
            if product not in rows:
                ndc_dropped += 1
                continue
            if ndc in ndc_rows and ndc_rows[ndc]["product"] != product:
                ndc_conflicts += 1
                ndc_rows[ndc]["conflict"] = True
                continue
            prow = rows[product]
            ndc_rows[ndc] = {
                "system": "ndc", "code": ndc, "tty": "NDC", "name": prow["name"], "ingredients": prow["ingredients"],
                "product": product, "strength": prow["strength"], "dose_form": prow["dose_form"], "unii": "",
                "active": "1", "source": SRC_CPC,
            }
    for ndc in [n for n, r in ndc_rows.items() if r.get("conflict")]:
        del ndc_rows[ndc]
    if ndc_conflicts:
        notes.append(f"{ndc_conflicts} NDCs linked to two products in the source; left out")

    # ------------------------------------------------------------------------------------------
    # Sanity checks
    problems: list[str] = []
    in_rows = {c for c, r in rows.items() if r["tty"] == "IN"}
    for r in list(rows.values()) + list(ndc_rows.values()):
        for field in COLUMNS:
            if "\t" in r[field] or "\n" in r[field] or "\r" in r[field]:
                problems.append(f"{r['system']} {r['code']}: control character in {field}")
        if not r["name"].strip():
            problems.append(f"{r['system']} {r['code']}: empty name")
        if not r["ingredients"]:
            problems.append(f"{r['system']} {r['code']}: no ingredients")
        for i in r["ingredients"].split(","):
            if i and i not in in_rows:
                problems.append(f"{r['system']} {r['code']}: ingredient {i} is not an IN row")
        if r["system"] == "ndc" and r["product"] not in rows:
            problems.append(f"ndc {r['code']}: product {r['product']} not in the table")
    keys = Counter((r["system"], r["code"]) for r in list(rows.values()) + list(ndc_rows.values()))
    problems += [f"duplicate {k}" for k, n in keys.items() if n > 1]
    tty_of: dict[str, set[str]] = defaultdict(set)
    for r in rows.values():
        tty_of[r["code"]].add(r["tty"])
    problems += [f"RXCUI {c} with TTYs {sorted(t)}" for c, t in tty_of.items() if len(t) > 1]

    # ------------------------------------------------------------------------------------------
    # Write
    order = {t: i for i, t in enumerate(TTY_ORDER)}
    sorted_rows = sorted(rows.values(), key=lambda r: (order.get(r["tty"], 99), numeric(r["code"])))
    header = "\t".join(COLUMNS) + "\n"
    os.makedirs(out_dir, exist_ok=True)
    tsv_path = os.path.join(out_dir, "rxnorm.tsv")
    digest = hashlib.sha256()
    with open(tsv_path, "w", encoding="utf-8", newline="\n") as out:
        out.write(header)
        digest.update(header.encode("utf-8"))
        for r in sorted_rows:
            line = "\t".join(r[c] for c in COLUMNS) + "\n"
            out.write(line)
            digest.update(line.encode("utf-8"))
    ndc_path = os.path.join(out_dir, "rxnorm_ndc.tsv.gz")
    with open(ndc_path, "wb") as raw:
        with gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=9, mtime=0) as gz:
            text = io.TextIOWrapper(gz, encoding="utf-8", newline="\n")
            text.write(header)
            for ndc in sorted(ndc_rows, key=numeric):
                text.write("\t".join(ndc_rows[ndc][c] for c in COLUMNS) + "\n")
            text.flush()
            text.detach()
    version = f"rxnorm-cpc-{date}+{digest.hexdigest()[:12]}"
    with open(os.path.join(out_dir, "rxnorm.version"), "w", encoding="utf-8", newline="\n") as out:
        out.write(version + "\n")

    # ------------------------------------------------------------------------------------------
    # Report
    counts = Counter(r["tty"] for r in rows.values())
    by_source = Counter((r["tty"], r["source"]) for r in rows.values())
    log(f"version: {version}")
    log(f"wrote {tsv_path} ({os.path.getsize(tsv_path):,} bytes), {ndc_path} ({os.path.getsize(ndc_path):,} bytes)")
    log("rows per TTY:")
    for t in TTY_ORDER:
        detail = ", ".join(f"{s} {n}" for (tt, s), n in sorted(by_source.items()) if tt == t)
        log(f"  {t:5} {counts.get(t, 0):7,}  ({detail})")
    unii_n = sum(1 for r in rows.values() if r["tty"] == "IN" and r["unii"])
    log(f"  NDC   {len(ndc_rows):7,}  (NDCs of products left out: {ndc_dropped:,})")
    log(f"  IN rows with a UNII: {unii_n:,}; every IN row has its RXCUI")
    log("left out (ingredients not derivable from the source):")
    for reason, n in sorted(dropped.items()):
        log(f"  {n:7,}  {reason}")
    log(f"CPIC drug table ({len(cpic_files)} migration files, {len(cpic)} RxNorm codes): "
        f"{sum(cpic_in_cpc.values())} already in the RxNorm release (TTY there: "
        + ", ".join(f"{t} {n}" for t, n in sorted(cpic_in_cpc.items())) + f"), {len(cpic_added)} added as IN:")
    for code, name in cpic_added:
        log(f"  {code}\t{name}")
    if cpic_disagree:
        log("CPIC names that differ from the RxNorm release (RxNorm kept):")
        for code, cname, rname, tty in cpic_disagree:
            log(f"  {code}\tCPIC {cname!r}\tRxNorm {rname!r} ({tty})")
    log(f"OHDSI Phenotype Library ({ohdsi_nfiles} cohort files, {len(ohdsi)} RxNorm ingredient codes): "
        f"{sum(ohdsi_agree.values())} already in the table with the same name ("
        + ", ".join(f"{s} {n}" for s, n in sorted(ohdsi_agree.items())) + f"), {len(ohdsi_disagree)} disagree"
        f" (left out), {len(ohdsi_added)} added as IN:")
    for code, name in ohdsi_added:
        log(f"  {code}\t{name}\t({', '.join(sorted(ohdsi_files[code])[:3])})")
    for code, name, there in ohdsi_disagree:
        log(f"  DISAGREES {code}\tOHDSI {name!r}\ttable: {there}")
    for note in notes:
        log(f"note: {note}")
    log("sanity checks: " + ("all passed" if not problems else f"{len(problems)} FAILED"))
    for p in problems[:50]:
        log(f"  FAIL {p}")

    # Spot checks (printed from the table, nothing asserted from memory)
    by_name: dict[str, list[dict]] = defaultdict(list)
    for r in rows.values():
        by_name[r["name"].lower()].append(r)

    def show(label: str, hits: list[dict], limit: int = 4) -> None:
        log(f"spot check: {label}: {len(hits)} row(s)")
        for r in hits[:limit]:
            names = [rows[i]["name"] for i in r["ingredients"].split(",") if i in rows]
            log(f"    {r['tty']} {r['code']} {r['name']!r} ingredients={r['ingredients']} ({' + '.join(names)})"
                f" strength={r['strength']!r} dose_form={r['dose_form']!r}")

    show("IN named 'warfarin'", [r for r in by_name.get("warfarin", []) if r["tty"] == "IN"])
    show("SCDs with sulfamethoxazole and trimethoprim", sorted(
        (r for r in rows.values() if r["tty"] == "SCD" and "sulfamethoxazole" in r["name"] and "trimethoprim" in r["name"]),
        key=lambda r: numeric(r["code"])))
    show("BN named 'Bactrim'", by_name.get("bactrim", []))
    show("PIN named 'metoprolol succinate'", by_name.get("metoprolol succinate", []))
    show("SCD '24 HR metoprolol succinate ... Extended Release Oral Tablet'", sorted(
        (r for r in rows.values() if r["tty"] == "SCD" and r["name"].startswith("24 HR metoprolol succinate")
         and r["name"].endswith("Extended Release Oral Tablet")), key=lambda r: numeric(r["code"])))

    # vocabulary.yaml reconciliation
    if vocabulary and os.path.exists(vocabulary):
        in_names = sorted({r["name"].lower() for r in rows.values() if r["tty"] == "IN"})
        in_set = set(in_names)
        vocab = vocabulary_ingredients(vocabulary)
        unmatched = [v for v in vocab if v.lower() not in in_set]
        log(f"vocabulary.yaml: {len(vocab)} ingredients, {len(vocab) - len(unmatched)} match an IN name exactly, "
            f"{len(unmatched)} do not:")
        via_cpic = [v for v in vocab if v.lower() in in_set and all(
            r["source"] == SRC_CPIC for r in by_name.get(v.lower(), []) if r["tty"] == "IN")]
        confirmed = [v for v in via_cpic if any(
            r["code"] in ohdsi for r in by_name.get(v.lower(), []) if r["tty"] == "IN")]
        if via_cpic:
            log(f"  (matched only by a CPIC-sourced IN row, name not confirmed by the RxNorm release: {', '.join(via_cpic)};"
                f" of these, code and name confirmed by the OHDSI source: {', '.join(confirmed) or 'none'})")
        via_ohdsi = [v for v in vocab if v.lower() in in_set and all(
            r["source"] == SRC_OHDSI for r in by_name.get(v.lower(), []) if r["tty"] == "IN")]
        if via_ohdsi:
            log(f"  (matched by an OHDSI-sourced IN row: {', '.join(via_ohdsi)})")
        for v in unmatched:
            close = difflib.get_close_matches(v.lower(), in_names, n=3, cutoff=0.6)
            other = [f"{r['tty']} {r['code']} -> IN {r['ingredients']} "
                     f"({', '.join(rows[i]['name'] for i in r['ingredients'].split(','))})"
                     for r in by_name.get(v.lower(), []) if r["tty"] in ("PIN", "MIN", "BN")]
            extra = f"; exact name is {'; '.join(other)}" if other else ""
            log(f"  {v}\t-> closest IN: {', '.join(close) if close else '(none)'}{extra}")
    return 1 if problems else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source-dir", required=True, help="holds rxnorm-cpc/, cpic/, ohdsi-phl/")
    parser.add_argument("--out-dir", default=HERE, help="where to write rxnorm.tsv, rxnorm_ndc.tsv.gz, rxnorm.version")
    parser.add_argument("--vocabulary", default=os.path.join(HERE, "vocabulary.yaml"),
                        help="vocabulary.yaml whose ingredient names are checked against the IN names")
    args = parser.parse_args(argv)
    return build(args.source_dir, args.out_dir, args.vocabulary)


if __name__ == "__main__":
    sys.exit(main())
