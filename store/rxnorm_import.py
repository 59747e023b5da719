"""RxNorm releases into clinical.drug_concepts: the RRF reader and the one apply path.

An unpacked RxNorm release (RXNCONSO.RRF, RXNREL.RRF, RXNSAT.RRF; NLM's Rich Release Format,
pipe-delimited, every field followed by `|`) is read in three streaming passes, each keeping only
what the next needs:

1. RXNCONSO: the SAB=RXNORM atoms of the term types we store (IN PIN MIN BN SCD SBD GPCK BPCK)
   and of the two we step through (SCDC to reach ingredients, DF for dose form names); current atoms
   only (SUPPRESS N, or E: editor-suppressed unquantified drugs, still valid codes). MTHSPL SU atoms
   give an ingredient's UNII.
2. RXNREL: SAB=RXNORM relations among those concepts. A row reads "RXCUI2 has RELA to RXCUI1"
   (NLM: "the relationship which the SECOND concept has to the FIRST"), so the row
   `IN|..|SCDC|..|has_ingredient` says the SCDC has_ingredient the IN. Both directions are in the
   file; each inverse name is turned round to its forward one, so either row is enough.
3. RXNSAT: NDCs (SAB=RXNORM, ATN=NDC, the normalised 11-digit form) of the products kept, streamed
   straight into the staging table; strengths (RXN_AVAILABLE_STRENGTH, RXN_STRENGTH) and UNIIs.

Ingredients are derived from the structure, never from names: IN itself; PIN form_of IN; MIN
has_part IN; SCDC has_ingredient IN (or has_precise_ingredient PIN); SCD consists_of SCDC; SBD
tradename_of SCD; BN tradename_of IN and the ingredients of its SBDs; packs contain SCD/SBD. A
concept whose ingredients cannot be derived is left out and counted: an empty ingredient list would
read as "contains nothing" and silence every alert.

Applying (shared with the shipped table, `knowledge_repo.sync_shipped_concepts`): COPY into a staging
table, then set-based SQL in the caller's one transaction: insert new codes, update changed ones,
retire codes the release stream no longer lists (never DELETE), reinstate returning ones, one
history row per change. The store reports progress as counts; drawing it is the CLI's business.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import re
import sys
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, text

from engine.knowledge import DrugConcept, parse_concepts_tsv

__all__ = [
    "RRF_COLUMNS",
    "ReleaseFiles",
    "ReleaseResult",
    "RetireRefused",
    "RrfError",
    "apply_concepts",
    "find_release",
    "import_rxnorm_release",
    "read_release",
    "read_shipped_table",
]

RRF_COLUMNS: dict[str, tuple[str, ...]] = {
    "RXNCONSO.RRF": (
        "RXCUI", "LAT", "TS", "LUI", "STT", "SUI", "ISPREF", "RXAUI", "SAUI", "SCUI", "SDUI", "SAB", "TTY", "CODE",
        "STR", "SRL", "SUPPRESS", "CVF",
    ),
    "RXNREL.RRF": (
        "RXCUI1", "RXAUI1", "STYPE1", "REL", "RXCUI2", "RXAUI2", "STYPE2", "RELA", "RUI", "SRUI", "SAB", "SL", "DIR",
        "RG", "SUPPRESS", "CVF",
    ),
    "RXNSAT.RRF": (
        "RXCUI", "LUI", "SUI", "RXAUI", "STYPE", "CODE", "ATUI", "SATUI", "ATN", "SAB", "ATV", "SUPPRESS", "CVF",
    ),
}  # fmt: skip
FILES = tuple(RRF_COLUMNS)

STORED_TTYS = ("IN", "PIN", "MIN", "BN", "SCD", "SBD", "GPCK", "BPCK")
_STEPPING_TTYS = ("SCDC", "DF")
_KEPT_TTYS = frozenset(STORED_TTYS + _STEPPING_TTYS)
_CURRENT = frozenset(("N", "E"))  # SUPPRESS values of atoms we keep (O obsolete, Y suppressed: not)

# Forward relation names (subject RXCUI2, object RXCUI1) and the inverse name of each.
_FORWARD = frozenset(
    ("has_ingredient", "has_ingredients", "has_precise_ingredient", "consists_of", "tradename_of", "form_of",
     "has_part", "contains", "has_dose_form")
)  # fmt: skip
_INVERSE = {
    "ingredient_of": "has_ingredient",
    "ingredients_of": "has_ingredients",
    "precise_ingredient_of": "has_precise_ingredient",
    "constitutes": "consists_of",
    "has_tradename": "tradename_of",
    "has_form": "form_of",
    "part_of": "has_part",
    "contained_in": "contains",
    "dose_form_of": "has_dose_form",
}
_NDC_11 = re.compile(r"[0-9]{11}")
_NDC_HYPHENATED = re.compile(r"([0-9]{4,5})-([0-9]{3,4})-([0-9]{1,2})")
_UNII = re.compile(r"[0-9A-Z]{10}")
_RELEASE_DATE = re.compile(r"(?<![0-9])(0[1-9]|1[0-2])(0[1-9]|[12][0-9]|3[01])((?:19|20)[0-9]{2})(?![0-9])")

# The release stream a concept row belongs to is its confirming release's (source, kind). A release
# retires only active codes of the kinds listed for it: a full release is a superset of the
# prescribable subset of the same date, the prescribable subset is not a superset of anything.
RETIRE_SCOPE = {"full": ("full", "prescribe"), "prescribe": ("prescribe",), "shipped": ("shipped",)}
SOURCE_TAG = {"full": "rxnorm", "prescribe": "rxnorm_cpc"}

Progress = Callable[[str, int, int], None]  # (what, done, total): bytes of a file, or steps of applying


class RrfError(ValueError):
    """A release that cannot be read: the message names the file and the line."""


class RetireRefused(ValueError):
    """The release would retire more of the codes it covers than the operator allowed."""


def _no_progress(what: str, done: int, total: int) -> None:
    pass


# -- locating and reading a release ----------------------------------------------------------------


@dataclass(frozen=True)
class ReleaseFiles:
    directory: Path
    paths: dict[str, Path]  # RXNCONSO.RRF -> its path, for each of FILES
    version: str
    kind: str  # "full" | "prescribe"

    def total_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.paths.values())

    def digest(self, on_progress: Progress = _no_progress) -> str:
        """SHA-256 over the three files, each preceded by its name and size."""
        outer = hashlib.sha256()
        total, done = self.total_bytes(), 0
        for name in FILES:
            path = self.paths[name]
            outer.update(f"{name}\0{path.stat().st_size}\0".encode())
            with path.open("rb") as f:
                while chunk := f.read(1 << 22):
                    outer.update(chunk)
                    done += len(chunk)
                    on_progress("hashing", done, total)
        return outer.hexdigest()


def find_release(directory: Path) -> ReleaseFiles:
    """The release's files in `directory` or its `rrf/` folder, and the release's date and kind as its
    folder and readme names give them (RxNorm_full_10062025, Readme_Full_Prescribe_10062025.txt)."""
    if not directory.is_dir():
        raise RrfError(f"{directory}: not a directory")
    paths: dict[str, Path] = {}
    for name in FILES:
        for candidate in (directory / name, directory / "rrf" / name):
            if candidate.is_file():
                paths[name] = candidate
                break
        else:
            raise RrfError(f"{name}: not found in {directory} (nor in {directory / 'rrf'})")
    # The release's own folders only: the folder given, its rrf/ (or, given rrf/, the folder above).
    here = directory.resolve()
    folders = [here, here.parent] if here.name.lower() == "rrf" else [here, here / "rrf"]
    names = [here.name, *(f.name for f in folders[1:] if here.name.lower() == "rrf")]
    for folder in folders:
        if folder.is_dir():
            names += sorted(p.name for p in folder.glob("[Rr]eadme*"))
    version = next(
        (f"{m.group(3)}-{m.group(1)}-{m.group(2)}" for n in names if (m := _RELEASE_DATE.search(n))), names[0]
    )
    kind = "prescribe" if any("prescribe" in n.lower() for n in names) else "full"
    return ReleaseFiles(directory, paths, version, kind)


def _lines(
    path: Path, name: str, wanted: Callable[[bytes], bool], on_progress: Progress
) -> Iterator[tuple[int, list[str]]]:
    """(line number, fields) of the lines `wanted` accepts, every line's shape checked first.

    The shape check counts separators in bytes (RRF values never contain `|`), so the lines no pass
    needs are checked without being decoded or split."""
    columns = len(RRF_COLUMNS[name])
    total = path.stat().st_size
    done = 0
    report_at = 0
    with path.open("rb") as f:
        for number, raw in enumerate(f, start=1):
            done += len(raw)
            bars = raw.count(b"|")
            if bars != columns or not raw.rstrip(b"\r\n").endswith(b"|"):
                found = bars if raw.rstrip(b"\r\n").endswith(b"|") else bars + 1
                raise RrfError(f"{name} line {number}: {found} columns, expected {columns} ({path})")
            if wanted(raw):
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError:
                    raise RrfError(f"{name} line {number}: not UTF-8 ({path})") from None
                yield number, line.rstrip("\r\n").split("|")
            if done >= report_at:
                on_progress(name, done, total)
                report_at = done + (1 << 22)
    on_progress(name, done, total)


def _numeric(code: str) -> tuple[int, str]:
    return (len(code), code)  # RXCUIs are digits: length then text orders them as numbers


def _ndc11(value: str) -> str | None:
    """The 11-digit NDC: RxNorm's normalised form as given, or a hyphenated 10-digit one padded."""
    value = value.strip()
    if _NDC_11.fullmatch(value):
        return value
    m = _NDC_HYPHENATED.fullmatch(value)
    if m is None or len(m.group(1) + m.group(2) + m.group(3)) != 10:
        return None
    return m.group(1).zfill(5) + m.group(2).zfill(4) + m.group(3).zfill(2)


@dataclass
class _Release:
    """What the passes keep: small, whatever the size of the files."""

    tty: dict[str, str] = field(default_factory=dict)  # RXCUI -> TTY (kept and stepping concepts)
    name: dict[str, str] = field(default_factory=dict)
    aui: dict[str, str] = field(default_factory=dict)  # RXAUI -> RXCUI of kept atoms
    unii: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    edges: dict[str, dict[str, set[str]]] = field(default_factory=lambda: defaultdict(lambda: defaultdict(set)))
    strength: dict[str, str] = field(default_factory=dict)  # RXCUI -> RXN_AVAILABLE_STRENGTH / RXN_STRENGTH
    skipped: dict[str, int] = field(default_factory=lambda: defaultdict(int))


def _read_conso(files: ReleaseFiles, on_progress: Progress) -> _Release:
    r = _Release()
    rank: dict[str, tuple[int, str]] = {}
    order = {t: i for i, t in enumerate(STORED_TTYS + _STEPPING_TTYS)}
    spl_unii: dict[str, set[str]] = defaultdict(set)
    intern = sys.intern

    def wanted(raw: bytes) -> bool:
        return b"|RXNORM|" in raw or b"|MTHSPL|SU|" in raw

    for number, f in _lines(files.paths["RXNCONSO.RRF"], "RXNCONSO.RRF", wanted, on_progress):
        rxcui, rxaui, sab, tty, code, name, suppress = f[0], f[7], f[11], f[12], f[13], f[14], f[16]
        if suppress not in _CURRENT:
            continue
        if sab == "MTHSPL" and tty == "SU":
            if _UNII.fullmatch(code):
                spl_unii[rxcui].add(code)
            continue
        if sab != "RXNORM" or tty not in _KEPT_TTYS:
            continue
        if not rxcui.isdigit() or not name:
            raise RrfError(f"RXNCONSO.RRF line {number}: an RXNORM {tty} atom needs a numeric RXCUI and a name")
        key = (order[tty], rxaui)
        if rxcui not in rank or key < rank[rxcui]:
            rank[rxcui] = key
            r.tty[rxcui] = intern(tty)
            r.name[rxcui] = name
        r.aui[rxaui] = rxcui
    for rxcui, codes in spl_unii.items():
        if r.tty.get(rxcui) in ("IN", "PIN"):
            r.unii[rxcui] |= codes
    return r


def _read_rel(files: ReleaseFiles, r: _Release, on_progress: Progress) -> None:
    def wanted(raw: bytes) -> bool:
        return b"|RXNORM|" in raw

    edges = r.edges
    for _, f in _lines(files.paths["RXNREL.RRF"], "RXNREL.RRF", wanted, on_progress):
        if f[10] != "RXNORM" or f[14] not in ("N", ""):
            continue
        rela = f[7]
        if rela in _FORWARD:
            subject, obj = f[4] or r.aui.get(f[5], ""), f[0] or r.aui.get(f[1], "")
        elif rela in _INVERSE:
            rela = _INVERSE[rela]
            subject, obj = f[0] or r.aui.get(f[1], ""), f[4] or r.aui.get(f[5], "")
        else:
            continue
        if subject in r.tty and obj in r.tty and subject != obj:
            edges[rela][subject].add(obj)


def _read_sat(files: ReleaseFiles, r: _Release, ndc_sink: Callable[[str, str], None], on_progress: Progress) -> None:
    products = {c for c, t in r.tty.items() if t in ("SCD", "SBD", "GPCK", "BPCK")}

    def wanted(raw: bytes) -> bool:
        return b"|RXNORM|" in raw or b"|UNII_CODE|" in raw

    for _, f in _lines(files.paths["RXNSAT.RRF"], "RXNSAT.RRF", wanted, on_progress):
        rxcui, atn, sab, atv, suppress = f[0] or r.aui.get(f[3], ""), f[8], f[9], f[10], f[11]
        if suppress not in ("N", ""):
            continue
        if atn == "UNII_CODE":
            if r.tty.get(rxcui) in ("IN", "PIN") and _UNII.fullmatch(atv):
                r.unii[rxcui].add(atv)
            continue
        if sab != "RXNORM":
            continue
        if atn == "NDC":
            if rxcui not in products:
                r.skipped["ndc_without_kept_product"] += 1
                continue
            ndc = _ndc11(atv)
            if ndc is None:
                r.skipped["ndc_malformed"] += 1
                continue
            ndc_sink(ndc, rxcui)
        elif atn in ("RXN_AVAILABLE_STRENGTH", "RXN_STRENGTH") and rxcui in r.tty and atv:
            r.strength.setdefault(rxcui, atv)


def _concepts(r: _Release, source: str) -> Iterator[DrugConcept]:
    """The stored concepts, ingredients derived from the relations (see the module docstring)."""
    tty, edges = r.tty, r.edges
    memo: dict[str, frozenset[str]] = {}
    sbds_of_bn: dict[str, set[str]] = defaultdict(set)  # BN -> the SBDs that have it as ingredient
    for subject, objs in edges["has_ingredient"].items():
        if tty[subject] == "SBD":
            for o in objs:
                if tty[o] == "BN":
                    sbds_of_bn[o].add(subject)
    scds_of_min: dict[str, set[str]] = defaultdict(set)  # MIN -> the SCDs that have_ingredients it
    for subject, objs in edges["has_ingredients"].items():
        if tty[subject] == "SCD":
            for o in objs:
                if tty[o] == "MIN":
                    scds_of_min[o].add(subject)

    def related(cui: str, rela: str, *ttys: str) -> list[str]:
        return [o for o in edges[rela].get(cui, ()) if tty[o] in ttys]

    def ingredients(cui: str) -> frozenset[str]:
        if cui in memo:
            return memo[cui]
        memo[cui] = frozenset()  # a cycle in bad data ends here instead of recursing for ever
        t = tty[cui]
        found: set[str] = set()
        if t == "IN":
            found = {cui}
        elif t == "PIN":
            found = set(related(cui, "form_of", "IN"))
        elif t == "MIN":
            found = set(related(cui, "has_part", "IN"))
            if not found:
                for scd in scds_of_min.get(cui, ()):
                    found |= ingredients(scd)
        elif t == "SCDC":
            found = set(related(cui, "has_ingredient", "IN"))
            for pin in related(cui, "has_precise_ingredient", "PIN"):
                found |= ingredients(pin)
        elif t == "SCD":
            for scdc in related(cui, "consists_of", "SCDC"):
                found |= ingredients(scdc)
        elif t == "SBD":
            for scd in related(cui, "tradename_of", "SCD"):
                found |= ingredients(scd)
        elif t == "BN":
            found = set(related(cui, "tradename_of", "IN"))
            for sbd in sbds_of_bn.get(cui, ()):
                found |= ingredients(sbd)
        elif t in ("GPCK", "BPCK"):
            for drug in related(cui, "contains", "SCD", "SBD"):
                found |= ingredients(drug)
        memo[cui] = frozenset(found)
        return memo[cui]

    def dose_form(cui: str) -> str | None:
        forms = sorted(r.name[d] for d in related(cui, "has_dose_form", "DF"))
        if not forms and tty[cui] == "SBD":
            forms = sorted({f for scd in related(cui, "tradename_of", "SCD") if (f := dose_form(scd))})
        return forms[0] if len(forms) == 1 else None

    def strength(cui: str) -> str | None:
        if cui in r.strength:
            return r.strength[cui]
        if tty[cui] == "SCD":
            parts = sorted(related(cui, "consists_of", "SCDC"), key=lambda c: r.name[c])
            values = [r.strength.get(p) for p in parts]
            return " / ".join(v for v in values if v) if parts and all(values) else None
        if tty[cui] == "SBD":
            scds = related(cui, "tradename_of", "SCD")
            return strength(scds[0]) if len(scds) == 1 else None
        return None

    for cui in sorted(tty, key=_numeric):
        t = tty[cui]
        if t not in STORED_TTYS:
            continue
        ins = ingredients(cui)
        if not ins:
            r.skipped[f"{t}_without_ingredients"] += 1
            continue
        product = t in ("SCD", "SBD", "GPCK", "BPCK")
        uniis = r.unii.get(cui, set())
        yield DrugConcept(
            system="rxnorm",
            code=cui,
            tty=t,
            name=r.name[cui],
            ingredients=tuple(sorted(ins, key=_numeric)),
            strength=strength(cui) if product or t == "SCDC" else None,
            dose_form=dose_form(cui) if product else None,
            unii=next(iter(uniis)) if len(uniis) == 1 else None,  # two UNIIs for one code: say none
            source=source,
        )


def read_release(
    files: ReleaseFiles,
    *,
    ndc_sink: Callable[[str, str], None],
    source: str = "rxnorm",
    on_progress: Progress = _no_progress,
) -> tuple[list[DrugConcept], dict[str, int]]:
    """The release's RxNorm concepts, and counts of what was left out. NDCs go to `ndc_sink(ndc,
    product RXCUI)` as RXNSAT streams past (they are most of the rows; the caller stages them)."""
    r = _read_conso(files, on_progress)
    if not any(t in STORED_TTYS for t in r.tty.values()):
        raise RrfError(f"RXNCONSO.RRF: no current SAB=RXNORM concepts of the types {' '.join(STORED_TTYS)}")
    _read_rel(files, r, on_progress)
    _read_sat(files, r, ndc_sink, on_progress)
    concepts = list(_concepts(r, source))
    return concepts, dict(r.skipped)


# -- applying ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReleaseResult:
    release_id: int | None  # None when nothing was applied (already imported)
    source: str
    version: str
    kind: str
    content_sha256: str
    already_imported: bool
    counts: dict[str, dict[str, int]]  # TTY -> change -> rows
    skipped: dict[str, int]

    def summary(self, seconds: float | None = None) -> str:
        head = f"{self.source} {self.version} ({self.kind})"
        took = f"; {seconds:.1f} s" if seconds is not None else ""
        if self.already_imported:
            return f"{head}: already imported (release {self.release_id}), nothing changed{took}"
        order = {t: i for i, t in enumerate((*STORED_TTYS, "NDC"))}
        parts = []
        for tty in sorted(self.counts, key=lambda t: (order.get(t, len(order)), t)):
            c = self.counts[tty]
            changed = c.get("changed", 0) + c.get("renamed", 0) + c.get("ingredients_changed", 0)
            part = (
                f"{tty} +{c.get('added', 0)} ~{changed} -{c.get('retired', 0)} ={c.get('unchanged', 0)}"
                + (f" reinstated {c['reinstated']}" if c.get("reinstated") else "")
                + (f" kept-newer {c['superseded']}" if c.get("superseded") else "")
            )
            parts.append(part)
        left_out = sum(self.skipped.values())
        return (
            f"{head}: release {self.release_id}; {', '.join(parts) or 'no concepts'}"
            f" (+added ~changed -retired =unchanged){'; left out ' + str(left_out) if left_out else ''}{took}"
        )


_STAGE_COLUMNS = ("system", "code", "tty", "name", "ingredients", "product", "strength", "dose_form", "unii", "source")


def _raw(conn: Connection) -> Any:
    raw = conn.connection.driver_connection
    assert raw is not None
    return raw


def _begin_staging(conn: Connection) -> None:
    # One importer at a time: two would each retire what the other just brought.
    conn.execute(text("SELECT pg_advisory_xact_lock(hashtext('clinical.drug_concepts'))"))
    conn.execute(text("SELECT set_config('work_mem', '128MB', true)"))
    conn.execute(
        text("""
        CREATE TEMPORARY TABLE concepts_in (
            system text NOT NULL, code text NOT NULL, tty text NOT NULL, name text NOT NULL,
            ingredients text[] NOT NULL, product text, strength text, dose_form text, unii text, source text NOT NULL
        ) ON COMMIT DROP
    """)
    )


def _copy_concepts(conn: Connection, concepts: Iterable[DrugConcept]) -> None:
    with (
        _raw(conn).cursor() as cur,
        cur.copy(f"COPY concepts_in ({', '.join(_STAGE_COLUMNS)}) FROM STDIN") as copy,
    ):
        for c in concepts:
            copy.write_row(
                (
                    c.system,
                    c.code,
                    c.tty,
                    c.name,
                    sorted(c.ingredients, key=_numeric),
                    c.product,
                    c.strength,
                    c.dose_form,
                    c.unii,
                    c.source,
                )
            )


def _latest(conn: Connection, source: str, kind: str) -> Any:
    return conn.execute(
        text(
            "SELECT id, content_sha256 FROM clinical.vocabulary_releases WHERE source = :s AND kind = :k"
            " ORDER BY id DESC LIMIT 1"
        ),
        {"s": source, "k": kind},
    ).one_or_none()


def _apply_staged(
    conn: Connection,
    *,
    source: str,
    version: str,
    kind: str,
    digest: str,
    actor: str | None,
    max_retire_percent: float | None,
    skipped: dict[str, int],
    on_progress: Progress,
) -> ReleaseResult:
    steps = 7
    on_progress("applying", 0, steps)
    conn.execute(text("ALTER TABLE concepts_in ADD PRIMARY KEY (system, code)"))
    conn.execute(text("ANALYZE concepts_in"))
    release_id = int(
        conn.execute(
            text(
                "INSERT INTO clinical.vocabulary_releases (source, version, kind, content_sha256, imported_by)"
                " VALUES (:s, :v, :k, :d, :by) RETURNING id"
            ),
            {"s": source, "v": version, "k": kind, "d": digest, "by": actor},
        ).scalar_one()
    )
    params = {"r": release_id, "source": source, "scope": list(RETIRE_SCOPE[kind]), "shipped": kind == "shipped"}
    on_progress("applying", 1, steps)
    # Parameters cannot be bound in CREATE TABLE AS: the temporary tables are created, then filled.
    conn.execute(
        text("CREATE TEMPORARY TABLE concept_changes (system text, code text, tty text, change text) ON COMMIT DROP")
    )
    conn.execute(text("CREATE TEMPORARY TABLE concepts_gone (system text, code text, tty text) ON COMMIT DROP"))
    # What this release does to each code it lists. The shipped table never overrides a code an RxNorm
    # release confirmed (it is older or a subset): such a code is "superseded" and left alone.
    conn.execute(
        text("""
        INSERT INTO concept_changes (system, code, tty, change)
        SELECT s.system, s.code, s.tty,
               CASE WHEN t.code IS NULL THEN 'added'
                    WHEN :shipped AND o.kind <> 'shipped' THEN 'superseded'
                    WHEN t.retired_release_id IS NOT NULL THEN 'reinstated'
                    WHEN t.ingredients IS DISTINCT FROM s.ingredients THEN 'ingredients_changed'
                    WHEN (t.tty, t.product, t.strength, t.dose_form, t.unii)
                         IS DISTINCT FROM (s.tty, s.product, s.strength, s.dose_form, s.unii) THEN 'changed'
                    WHEN t.name IS DISTINCT FROM s.name THEN 'renamed'
                    ELSE 'unchanged' END AS change
        FROM concepts_in s
        LEFT JOIN clinical.drug_concepts t ON t.system = s.system AND t.code = s.code
        LEFT JOIN clinical.vocabulary_releases o ON o.id = t.release_id
    """),
        params,
    )
    # Codes of this release's stream that it no longer lists.
    conn.execute(
        text("""
        INSERT INTO concepts_gone (system, code, tty)
        SELECT t.system, t.code, t.tty
        FROM clinical.drug_concepts t JOIN clinical.vocabulary_releases o ON o.id = t.release_id
        WHERE t.retired_release_id IS NULL AND o.source = :source AND o.kind = ANY(:scope)
          AND NOT EXISTS (SELECT 1 FROM concepts_in s WHERE s.system = t.system AND s.code = t.code)
    """),
        params,
    )
    on_progress("applying", 2, steps)
    if max_retire_percent is not None:
        gone, covered = conn.execute(
            text("""
            SELECT (SELECT count(*) FROM concepts_gone),
                   (SELECT count(*) FROM clinical.drug_concepts t JOIN clinical.vocabulary_releases o
                      ON o.id = t.release_id
                    WHERE t.retired_release_id IS NULL AND o.source = :source AND o.kind = ANY(:scope))
        """),
            params,
        ).one()
        if gone and 100.0 * gone / covered > max_retire_percent:
            raise RetireRefused(
                f"this release would retire {gone} of the {covered} active codes it covers"
                f" ({100.0 * gone / covered:.1f}%, more than {max_retire_percent:g}%): is it the whole release?"
                " Nothing was imported; allow it with --allow-retire PERCENT"
            )
    # History first: it reads the old values the updates below replace. Only the changed columns.
    conn.execute(
        text("""
        INSERT INTO clinical.drug_concept_history (system, code, release_id, change, old_values, new_values)
        SELECT c.system, c.code, :r, c.change, d.old_values, d.new_values
        FROM concept_changes c
        JOIN concepts_in s ON s.system = c.system AND s.code = c.code
        JOIN clinical.drug_concepts t ON t.system = c.system AND t.code = c.code
        CROSS JOIN LATERAL (
            SELECT jsonb_object_agg(o.key, o.value) AS old_values, jsonb_object_agg(n.key, n.value) AS new_values
            FROM jsonb_each(jsonb_build_object('tty', t.tty, 'name', t.name, 'ingredients', t.ingredients,
                     'product', t.product, 'strength', t.strength, 'dose_form', t.dose_form, 'unii', t.unii,
                     'retired_release_id', t.retired_release_id)) o
            JOIN jsonb_each(jsonb_build_object('tty', s.tty, 'name', s.name, 'ingredients', s.ingredients,
                     'product', s.product, 'strength', s.strength, 'dose_form', s.dose_form, 'unii', s.unii,
                     'retired_release_id', NULL::bigint)) n ON n.key = o.key
            WHERE o.value IS DISTINCT FROM n.value) d
        WHERE c.change IN ('renamed', 'ingredients_changed', 'changed', 'reinstated')
    """),
        params,
    )
    conn.execute(
        text("""
        INSERT INTO clinical.drug_concept_history (system, code, release_id, change)
        SELECT system, code, :r, 'added' FROM concept_changes WHERE change = 'added'
    """),
        params,
    )
    on_progress("applying", 3, steps)
    conn.execute(
        text("""
        INSERT INTO clinical.drug_concepts (system, code, tty, name, ingredients, product, strength, dose_form, unii,
            source, release_id, first_release_id)
        SELECT s.system, s.code, s.tty, s.name, s.ingredients, s.product, s.strength, s.dose_form, s.unii, s.source,
               :r, :r
        FROM concepts_in s JOIN concept_changes c ON c.system = s.system AND c.code = s.code
        WHERE c.change = 'added'
    """),
        params,
    )
    on_progress("applying", 4, steps)
    # Every code the release lists is confirmed by it (release_id), changed or not.
    conn.execute(
        text("""
        UPDATE clinical.drug_concepts t
        SET tty = s.tty, name = s.name, ingredients = s.ingredients, product = s.product, strength = s.strength,
            dose_form = s.dose_form, unii = s.unii, source = s.source, release_id = :r, retired_release_id = NULL
        FROM concepts_in s JOIN concept_changes c ON c.system = s.system AND c.code = s.code
        WHERE t.system = s.system AND t.code = s.code AND c.change NOT IN ('added', 'superseded')
    """),
        params,
    )
    on_progress("applying", 5, steps)
    conn.execute(
        text("""
        INSERT INTO clinical.drug_concept_history (system, code, release_id, change, new_values)
        SELECT system, code, :r, 'retired', jsonb_build_object('retired_release_id', :r) FROM concepts_gone
    """),
        params,
    )
    conn.execute(
        text("""
        UPDATE clinical.drug_concepts t SET retired_release_id = :r
        FROM concepts_gone g WHERE t.system = g.system AND t.code = g.code
    """),
        params,
    )
    on_progress("applying", 6, steps)
    counts: dict[str, dict[str, int]] = defaultdict(dict)
    for tty, change, n in conn.execute(
        text("""
        SELECT tty, change, count(*) FROM concept_changes GROUP BY tty, change
        UNION ALL SELECT tty, 'retired', count(*) FROM concepts_gone GROUP BY tty
    """)
    ):
        counts[tty][change] = int(n)
    conn.execute(
        text("""
        UPDATE clinical.vocabulary_releases
        SET counts = CAST(:c AS jsonb), concept_count = (SELECT count(*) FROM clinical.drug_concepts)
        WHERE id = :r
    """),
        {"c": json.dumps({**counts, "_left_out": skipped}, sort_keys=True), "r": release_id},
    )
    on_progress("applying", steps, steps)
    return ReleaseResult(release_id, source, version, kind, digest, False, dict(counts), skipped)


def _already(source: str, version: str, kind: str, digest: str, release_id: int) -> ReleaseResult:
    return ReleaseResult(release_id, source, version, kind, digest, True, {}, {})


def import_rxnorm_release(
    conn: Connection,
    directory: Path,
    *,
    max_retire_percent: float | None = 5.0,
    actor: str | None = None,
    on_progress: Progress = _no_progress,
) -> ReleaseResult:
    """Reads an unpacked RxNorm release and applies it, in the caller's transaction (all or nothing).

    The same files as the stream's latest release change nothing and add no release row."""
    files = find_release(directory)
    source = "RXNORM"
    digest = files.digest(on_progress)
    latest = _latest(conn, source, files.kind)
    if latest is not None and latest.content_sha256 == digest:
        return _already(source, files.version, files.kind, digest, int(latest.id))
    _begin_staging(conn)
    conn.execute(text("CREATE TEMPORARY TABLE ndc_in (ndc text NOT NULL, product text NOT NULL) ON COMMIT DROP"))
    with _raw(conn).cursor() as cur, cur.copy("COPY ndc_in (ndc, product) FROM STDIN") as copy:
        concepts, skipped = read_release(
            files,
            ndc_sink=lambda ndc, product: copy.write_row((ndc, product)),
            source=SOURCE_TAG[files.kind],
            on_progress=on_progress,
        )
    _copy_concepts(conn, concepts)
    del concepts
    # One NDC listed for two products (it happens when sources disagree) takes the lowest RXCUI: the
    # choice is stable from release to release, and counted.
    ndc_codes = conn.execute(
        text("""
        INSERT INTO concepts_in (system, code, tty, name, ingredients, product, strength, dose_form, unii, source)
        SELECT DISTINCT ON (n.ndc) 'ndc', n.ndc, 'NDC', p.name, p.ingredients, p.code, p.strength, p.dose_form,
               NULL, p.source
        FROM ndc_in n JOIN concepts_in p ON p.system = 'rxnorm' AND p.code = n.product
        ORDER BY n.ndc, length(p.code), p.code
    """)
    ).rowcount
    listed, conflicts = conn.execute(
        text("""
        SELECT count(*), count(*) FILTER (WHERE products > 1)
        FROM (SELECT count(DISTINCT product) AS products FROM ndc_in GROUP BY ndc) x
    """)
    ).one()
    if conflicts:
        skipped["ndc_with_two_products"] = int(conflicts)
    if listed > ndc_codes:
        skipped["ndc_of_product_left_out"] = int(listed - ndc_codes)
    return _apply_staged(
        conn,
        source=source,
        version=files.version,
        kind=files.kind,
        digest=digest,
        actor=actor,
        max_retire_percent=max_retire_percent,
        skipped=skipped,
        on_progress=on_progress,
    )


def apply_concepts(
    conn: Connection,
    concepts: Iterable[DrugConcept],
    *,
    version: str,
    kind: str = "shipped",
    source: str = "RXNORM",
    actor: str | None = None,
    max_retire_percent: float | None = None,
    on_progress: Progress = _no_progress,
) -> ReleaseResult:
    """Applies a list of concepts (the shipped table) through the same path as an RRF release.

    The digest is over the concepts' content, so the same table applied twice changes nothing."""
    rows = sorted(concepts, key=lambda c: (c.system, _numeric(c.code)))
    seen: set[tuple[str, str]] = set()
    digest = hashlib.sha256(f"{version}\n".encode())
    for c in rows:
        if (c.system, c.code) in seen:
            raise ValueError(f"{c.system}:{c.code} is listed twice")
        seen.add((c.system, c.code))
        digest.update(
            "\t".join(
                (c.system, c.code, c.tty, c.name, ",".join(sorted(c.ingredients, key=_numeric)), c.product or "",
                 c.strength or "", c.dose_form or "", c.unii or "", c.source)
            ).encode() + b"\n"
        )  # fmt: skip
    content = digest.hexdigest()
    latest = _latest(conn, source, kind)
    if latest is not None and latest.content_sha256 == content:
        return _already(source, version, kind, content, int(latest.id))
    _begin_staging(conn)
    # A concept the table marks inactive is not listed by it: it is retired if we had it, else left out.
    _copy_concepts(conn, (c for c in rows if c.active))
    skipped = {"inactive_in_table": n} if (n := sum(1 for c in rows if not c.active)) else {}
    return _apply_staged(
        conn,
        source=source,
        version=version,
        kind=kind,
        digest=content,
        actor=actor,
        max_retire_percent=max_retire_percent,
        skipped=skipped,
        on_progress=on_progress,
    )


SHIPPED_FILES = ("rxnorm.tsv", "rxnorm_ndc.tsv.gz")
SHIPPED_VERSION_FILE = "rxnorm.version"


def read_shipped_table(directory: Path) -> tuple[list[DrugConcept], str] | None:
    """The shipped concept table of a knowledge folder (rxnorm.tsv, its NDCs in rxnorm_ndc.tsv.gz) and
    the release it was built from (rxnorm.version); None when the folder has none. Raises
    engine.knowledge.KnowledgeFileError naming the file and line of a bad row."""
    concepts: list[DrugConcept] = []
    for name in SHIPPED_FILES:
        path = directory / name
        if path.is_file():
            raw = path.read_bytes()
            data = gzip.decompress(raw) if name.endswith(".gz") else raw
            concepts += parse_concepts_tsv(data.decode("utf-8"), where=str(path))
    if not concepts:
        return None
    version_path = directory / SHIPPED_VERSION_FILE
    version = version_path.read_text(encoding="utf-8").strip() if version_path.is_file() else directory.name
    return concepts, version
