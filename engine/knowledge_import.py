"""Importing interaction knowledge bases' own CSV exports: profiles, identity, folding.

A profile says which column holds what (`drug_a`, `drug_b`, `severity`, ...), how the source's
severity grades map onto ours, and how the file is encoded. Every endpoint name goes through the drug
vocabulary (`Vocabulary.normalize_drug`, by code first when the export carries codes); a name that
does not resolve is reported and its pairs flagged, never stored as a new ingredient. Rows that
normalisation folds onto one pair keep the highest grade and are reported with every source row;
combination products expand to one pair per ingredient.

Pure: bytes, a profile document and a vocabulary in, an `ImportPlan` out. The CLI reads the files,
decides whether unresolved names refuse the import, and hands the pairs to the store.
"""

from __future__ import annotations

import codecs
import csv
import io
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import yaml

from engine.identity import CODE_SYSTEMS, Coding, fold, parse_coding
from engine.knowledge import (
    CsvImportError,
    EntityKey,
    InteractionPair,
    Vocabulary,
    _csv_problem,
    _endpoint,
    _physical_lines,
    evidence_from_source,
    pair_id,
    severity_from_source,
)
from engine.model import EvidenceLevel, Severity

__all__ = [
    "FIELDS",
    "ExpandedName",
    "FoldedPair",
    "ImportPlan",
    "ImportProfile",
    "ProfileError",
    "UnresolvedName",
    "describe_expansions",
    "describe_folds",
    "load_profile_document",
    "plan_import",
    "profile_from_document",
    "unresolved_report_tsv",
    "with_flags",
]

REQUIRED_FIELDS = ("drug_a", "drug_b", "severity")
OPTIONAL_FIELDS = (
    "description",
    "recommendation",
    "interaction_type",
    "evidence_level",
    "avoid_combination",
    "source",
    "drug_a_code",
    "drug_b_code",
)
FIELDS = REQUIRED_FIELDS + OPTIONAL_FIELDS
_CODE_FIELD = {"drug_a": "drug_a_code", "drug_b": "drug_b_code"}
_PROFILE_KEYS = (
    "name",
    "source",
    "delimiter",
    "encoding",
    "columns",
    "severity",
    "evidence",
    "code_system",
    "unmapped_columns",
)
_DRUG_CODE_SYSTEMS = ("rxnorm", "ndc")
_DELIMITER_NAMES = {"tab": "\t", "\\t": "\t", "comma": ",", "semicolon": ";", "pipe": "|"}
_TRUE = frozenset({"true", "t", "yes", "y", "1"})
_FALSE = frozenset({"false", "f", "no", "n", "0", ""})
_OUR_LEVELS = ", ".join(s.name for s in Severity)


class ProfileError(ValueError):
    """A profile (file or flags) that cannot be used; the message names the field."""


def _severity_key(value: str) -> str:
    return " ".join(str(value).split()).casefold()


@dataclass(frozen=True)
class ImportProfile:
    name: str
    columns: Mapping[str, str]  # field -> the header as the export writes it
    # The source's grades (folded) -> ours; None: any scale severity_from_source knows (our own files).
    severity: Mapping[str, Severity] | None = None
    severity_labels: tuple[str, ...] = ()  # the map's keys as written, for messages
    evidence: EvidenceLevel = EvidenceLevel.UNKNOWN  # when there is no evidence column, or the cell is empty
    source: str = ""
    code_system: str | None = None  # of drug_a_code / drug_b_code
    delimiter: str = ","
    encoding: str = "utf-8"
    unmapped_columns: Literal["ignore", "refuse"] = "ignore"


def load_profile_document(text: str, *, where: str) -> dict[str, Any]:
    """A profile file's YAML as a mapping (checked by profile_from_document)."""
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ProfileError(f"{where}: not readable as YAML: {exc}") from None
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        raise ProfileError(f"{where}: a profile is a mapping (columns, severity, ...), not {type(doc).__name__}")
    return doc


def _split_flag(flag: str, text: str, *, last: bool) -> tuple[str, str]:
    left, sep, right = text.rpartition("=") if last else text.partition("=")
    if not sep or not left.strip() or not right.strip():
        raise ProfileError(f"{flag} {text!r}: expected NAME=VALUE")
    return left.strip(), right.strip()


def with_flags(
    document: Mapping[str, Any] | None,
    *,
    columns: Sequence[str] = (),
    severities: Sequence[str] = (),
    delimiter: str | None = None,
    encoding: str | None = None,
    evidence: str | None = None,
    code_system: str | None = None,
) -> dict[str, Any]:
    """A profile document with command-line flags laid over it (`--column drug_a=Drug1`,
    `--severity Major=HIGH`): a flag replaces the profile's entry of the same name."""
    doc = dict(document or {})
    for key, flags in (("columns", columns), ("severity", severities)):
        if flags and doc.get(key) is not None and not isinstance(doc[key], dict):
            raise ProfileError(f"{key}: expected a mapping, got {doc[key]!r}")
    if columns:
        mapped = dict(doc.get("columns") or {})
        for flag in columns:
            name, header = _split_flag("--column", flag, last=False)
            mapped[name] = header
        doc["columns"] = mapped
    if severities:
        grades = dict(doc.get("severity") or {})
        for flag in severities:
            value, level = _split_flag("--severity", flag, last=True)
            grades[value] = level
        doc["severity"] = grades
    overrides: dict[str, str | None] = {
        "delimiter": delimiter,
        "encoding": encoding,
        "evidence": evidence,
        "code_system": code_system,
    }
    doc.update((key, value) for key, value in overrides.items() if value is not None)
    return doc


def _text(doc: Mapping[str, Any], key: str, where: str, default: str) -> str:
    value = doc.get(key, default)
    if value is None:
        return default
    if not isinstance(value, str):
        raise ProfileError(f"{where}: {key}: expected text, got {value!r}")
    return value


def profile_from_document(doc: Mapping[str, Any], *, where: str) -> ImportProfile:
    """Check a profile document and build the profile; every error names the field."""
    unknown = [str(k) for k in doc if k not in _PROFILE_KEYS]
    if unknown:
        raise ProfileError(f"{where}: {unknown[0]}: not a profile field (one of {', '.join(_PROFILE_KEYS)})")
    raw_columns = doc.get("columns")
    if not isinstance(raw_columns, dict) or not raw_columns:
        raise ProfileError(f"{where}: columns: required, a mapping of field to the export's header")
    columns: dict[str, str] = {}
    by_header: dict[str, str] = {}
    for name, header in raw_columns.items():
        if name not in FIELDS:
            raise ProfileError(f"{where}: columns.{name}: not a field (one of {', '.join(FIELDS)})")
        if not isinstance(header, str) or not header.strip():
            raise ProfileError(f"{where}: columns.{name}: expected the header of a column, got {header!r}")
        header = header.strip()
        other = by_header.get(header.casefold())
        if other is not None:
            raise ProfileError(f"{where}: columns.{name}: {header!r} is already the column of {other}")
        by_header[header.casefold()] = name
        columns[name] = header
    for name in REQUIRED_FIELDS:
        if name not in columns:
            raise ProfileError(f"{where}: columns.{name}: required (which column holds it?)")

    severity: dict[str, Severity] | None = None
    labels: list[str] = []
    raw_severity = doc.get("severity")
    if raw_severity is not None:
        if not isinstance(raw_severity, dict) or not raw_severity:
            raise ProfileError(f"{where}: severity: expected a mapping of the source's grades to ours ({_OUR_LEVELS})")
        severity = {}
        for value, level in raw_severity.items():
            if isinstance(value, bool) or value is None:
                # YAML 1.1 reads unquoted yes/no/on/off/null as booleans and null.
                raise ProfileError(f"{where}: severity.{value}: quote the grade, YAML read it as {value!r}")
            label = str(value)
            try:
                placed = severity_from_source(str(level))
            except ValueError:
                raise ProfileError(
                    f"{where}: severity.{label}: {level!r} is not a severity we can place (one of {_OUR_LEVELS})"
                ) from None
            key = _severity_key(label)
            if key in severity and severity[key] is not placed:
                raise ProfileError(
                    f"{where}: severity.{label}: mapped twice, to {severity[key].name} and {placed.name}"
                )
            severity[key] = placed
            labels.append(label)

    try:
        evidence = evidence_from_source(_text(doc, "evidence", where, ""))
    except ValueError as exc:
        raise ProfileError(f"{where}: evidence: {exc}") from None

    code_system = None
    coded = [c for c in ("drug_a_code", "drug_b_code") if c in columns]
    raw_system = _text(doc, "code_system", where, "")
    if raw_system:
        code_system = CODE_SYSTEMS.get(raw_system.strip().lower().rstrip("/"))
        if code_system not in _DRUG_CODE_SYSTEMS:
            raise ProfileError(f"{where}: code_system: {raw_system!r} is not a drug code system (rxnorm or ndc)")
    if coded and code_system is None:
        raise ProfileError(f"{where}: code_system: required when columns.{coded[0]} is mapped (rxnorm or ndc)")

    delimiter = _text(doc, "delimiter", where, ",")
    delimiter = _DELIMITER_NAMES.get(delimiter.lower(), delimiter)
    if len(delimiter) != 1 or delimiter in '"\r\n':
        raise ProfileError(f"{where}: delimiter: {delimiter!r} is not one character (or tab, comma, semicolon, pipe)")
    encoding = _text(doc, "encoding", where, "utf-8")
    try:
        codecs.lookup(encoding)
    except LookupError:
        raise ProfileError(f"{where}: encoding: {encoding!r} is not an encoding Python knows") from None
    unmapped = _text(doc, "unmapped_columns", where, "ignore")
    if unmapped not in ("ignore", "refuse"):
        raise ProfileError(f"{where}: unmapped_columns: {unmapped!r} is not ignore or refuse")
    return ImportProfile(
        name=_text(doc, "name", where, where),
        columns=columns,
        severity=severity,
        severity_labels=tuple(labels),
        evidence=evidence,
        source=_text(doc, "source", where, "").strip(),
        code_system=code_system,
        delimiter=delimiter,
        encoding=encoding,
        unmapped_columns="refuse" if unmapped == "refuse" else "ignore",
    )


# --------------------------------------------------------------------------------------------------
# What an import found


@dataclass(frozen=True, slots=True)
class UnresolvedName:
    line: int
    column: str  # the export's header
    text: str  # as written (with its code, when the row gave one)
    reason: str  # the vocabulary's status, and what it noted
    suggestions: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class SourceRow:
    line: int
    drug_a: str  # as written
    drug_b: str
    source_severity: str
    severity: Severity


@dataclass(frozen=True, slots=True)
class FoldedPair:
    """Several rows that are one pair once their names are resolved: the highest grade is kept."""

    a: EntityKey
    b: EntityKey
    source: str
    kept_line: int
    kept: Severity
    rows: tuple[SourceRow, ...]  # every source row, in file order
    unresolved: bool = False

    @property
    def conflicting(self) -> bool:
        return len({r.severity for r in self.rows}) > 1


@dataclass(frozen=True, slots=True)
class ExpandedName:
    """A combination product in one endpoint, expanded to one pair per ingredient."""

    line: int
    column: str
    text: str
    ingredients: tuple[str, ...]


@dataclass(frozen=True)
class ImportPlan:
    pairs: tuple[InteractionPair, ...]  # resolved pairs and, flagged `unresolved`, the pairs of unresolved names
    rows_read: int
    unresolved: tuple[UnresolvedName, ...] = ()
    folded: tuple[FoldedPair, ...] = ()
    expanded: tuple[ExpandedName, ...] = ()
    notes: tuple[str, ...] = ()

    @property
    def flagged(self) -> int:
        return sum(1 for p in self.pairs if p.unresolved)

    @property
    def folded_rows(self) -> int:
        """Rows that did not become a pair of their own."""
        return sum(len(f.rows) - 1 for f in self.folded)


# --------------------------------------------------------------------------------------------------
# Reading an export


def _decode(data: bytes, encoding: str) -> str:
    codec = codecs.lookup(encoding).name
    if codec == "utf-8":
        codec = "utf-8-sig"  # a BOM is how Excel marks UTF-8, not text
    try:
        return data.decode(codec)
    except UnicodeDecodeError as exc:
        before = data[: exc.start].decode(codec, errors="replace")
        line = before.replace("\r\n", "\n").replace("\r", "\n").count("\n") + 1
        raise CsvImportError(
            [f"line {line}: not {encoding} text (byte {data[exc.start]:#04x}); nothing was imported"]
        ) from None


@dataclass(frozen=True, slots=True)
class _Endpoint:
    keys: tuple[EntityKey, ...]  # one, or one per ingredient of a combination
    unresolved: UnresolvedName | None = None
    expanded: bool = False


@dataclass(slots=True)
class _Candidate:
    line: int
    pair: InteractionPair
    row: SourceRow


@dataclass
class _Resolver:
    vocabulary: Vocabulary
    code_system: str | None
    cache: dict[tuple[str, str], _Endpoint | str] = field(default_factory=dict)

    def endpoint(self, text: str, code: str) -> _Endpoint | str:
        """The endpoint a cell names, or the problem with it (a str). `line`/`column` of an
        unresolved name are filled in by the caller."""
        cached = self.cache.get((text, code))
        if cached is None:
            cached = self._endpoint(text, code)
            self.cache[(text, code)] = cached
        return cached

    def _endpoint(self, text: str, code: str) -> _Endpoint | str:
        kind, sep, rest = text.partition(":")
        if sep and kind.strip().lower() in ("class", "food", "food_group"):
            try:
                return _Endpoint((_endpoint(text),))
            except ValueError as exc:
                return str(exc)
        if sep and kind.strip().lower() == "ingredient":
            text = rest  # still resolved: the prefix claims an ingredient, the vocabulary decides
        coding: Coding | None = None
        if code:
            assert self.code_system is not None  # the profile requires it with a code column
            try:
                coding = parse_coding(self.code_system, code)
            except ValueError as exc:
                return f"code {exc}"
        if not fold(text) and coding is None:
            return "is empty"
        drug = self.vocabulary.normalize_drug(text, coding)
        written = f"{text} ({coding})" if coding is not None and text.strip() else (text or str(coding))
        unknown = [i for i in drug.ingredients if i not in self.vocabulary.ingredients]
        if drug.status != "resolved" or not drug.ingredients or unknown:
            reason = drug.status if drug.status != "resolved" else "resolved to names the vocabulary does not list"
            details = [*drug.notes]
            if drug.unrecognised and drug.status in ("partial", "ambiguous"):
                details.append("not resolved: " + ", ".join(drug.unrecognised))
            for part in drug.unrecognised:
                meanings = self.vocabulary.ambiguous_names.get(part)
                if meanings:
                    details.append(f"{part!r} could be " + " or ".join(" + ".join(m) for m in meanings))
            if unknown and drug.status == "resolved":
                details.append(", ".join(unknown))
            if details:
                reason += ": " + "; ".join(details)
            # Kept under the name as written, folded, so a reviewer finds the row; the pair is flagged
            # and never matched.
            name = fold(text) or str(coding)
            return _Endpoint(
                (("ingredient", name),),
                unresolved=UnresolvedName(0, "", written, reason, drug.suggestions),
            )
        keys = tuple(("ingredient", name) for name in drug.ingredients)
        return _Endpoint(keys, expanded=len(keys) > 1)


def _rows(text: str, delimiter: str) -> Iterator[tuple[int, list[str] | None, list[str]]]:
    """(first line of the record, its cells or None when unreadable, problems on that record)."""
    nul_lines: list[int] = []
    reader = csv.reader(_physical_lines(io.StringIO(text, newline=""), nul_lines), delimiter=delimiter)
    while True:
        line = reader.line_num + 1  # a record's first line: line_num is its last once it is read
        try:
            row: list[str] | None = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield line, None, [f"line {line}: {_csv_problem(exc)}"]
            if reader.line_num < line:  # nothing was read: stop rather than fail on the same spot forever
                return
            continue
        if nul_lines:
            # PostgreSQL text cannot hold NUL; the record is not checked further.
            problems = [f"line {n}: contains a NUL character" for n in nul_lines]
            nul_lines.clear()
            yield line, None, problems
            continue
        yield line, row, []


def _header(header: list[str], profile: ImportProfile) -> tuple[dict[str, int], list[str], list[str]]:
    """field -> column index, errors, notes."""
    cells = [h.strip() for h in header]
    errors: list[str] = []
    notes: list[str] = []
    positions: dict[str, list[int]] = {}
    for i, cell in enumerate(cells):
        positions.setdefault(cell.casefold(), []).append(i)
    index: dict[str, int] = {}
    for name, wanted in profile.columns.items():
        found = positions.get(wanted.casefold(), [])
        if len(found) > 1:
            errors.append(f"line 1: column {wanted!r} ({name}) appears {len(found)} times")
        elif found:
            index[name] = found[0]
        elif name in REQUIRED_FIELDS or name in _CODE_FIELD.values():
            errors.append(
                f"line 1: no column {wanted!r} (profile {profile.name}: columns.{name}); the header has "
                + ", ".join(repr(c) for c in cells[:20])
            )
        else:
            notes.append(f"column {wanted!r} ({name}) is not in the file")
    if profile.unmapped_columns == "refuse":
        # Our own format: a misspelt optional column ("recomendation") would otherwise be dropped unseen.
        mapped = {h.casefold() for h in profile.columns.values()}
        unknown = [c for c in cells if c.casefold() not in mapped]
        if unknown:
            errors.append(
                f"line 1: unknown column(s) {', '.join(repr(c) for c in unknown)}; "
                f"expected {', '.join(profile.columns.values())}"
            )
    return index, errors, notes


def plan_import(data: bytes, profile: ImportProfile, vocabulary: Vocabulary, *, source: str) -> ImportPlan:
    """Read an export with a profile, all or nothing: every problem is a CsvImportError naming its
    line. Unresolved names are not errors: they are in the plan, their pairs flagged."""
    text = _decode(data, profile.encoding)
    records = _rows(text, profile.delimiter)
    first = next(records, None)
    if first is None:
        raise CsvImportError(["line 1: the file is empty; expected a header row"])
    _, header, problems = first
    if problems or header is None:
        raise CsvImportError(problems)
    index, errors, notes = _header(header, profile)
    if errors:
        raise CsvImportError(errors)
    width = len(header)
    resolver = _Resolver(vocabulary, profile.code_system)

    def cell(row: list[str], name: str) -> str:
        i = index.get(name)
        return row[i].strip() if i is not None and i < len(row) else ""

    rows_read = 0
    unresolved: list[UnresolvedName] = []
    expanded: list[ExpandedName] = []
    groups: dict[tuple[str, bool], list[_Candidate]] = {}
    for line, row, row_problems in records:
        if row_problems or row is None:
            errors.extend(row_problems)
            continue
        if not row or all(not c.strip() for c in row):
            continue
        rows_read += 1
        if len(row) > width:
            errors.append(f"line {line}: {len(row)} fields, the header has {width}")
            continue
        problems = []
        ends: dict[str, _Endpoint] = {}
        for name in ("drug_a", "drug_b"):
            found = resolver.endpoint(cell(row, name), cell(row, _CODE_FIELD[name]))
            if isinstance(found, str):
                problems.append(f"{name} ({profile.columns[name]}) {found}")
            else:
                ends[name] = found
        raw_severity = cell(row, "severity")
        severity = Severity.INFO
        if profile.severity is not None:
            placed = profile.severity.get(_severity_key(raw_severity))
            if placed is None:
                problems.append(
                    f"severity {raw_severity!r} is not in the profile's severity map"
                    f" ({', '.join(profile.severity_labels)})"
                )
            else:
                severity = placed
        else:
            try:
                severity = severity_from_source(raw_severity)
            except ValueError:
                problems.append(f"severity {raw_severity!r} is not on a known scale")
        evidence = profile.evidence
        if cell(row, "evidence_level"):
            try:
                evidence = evidence_from_source(cell(row, "evidence_level"))
            except ValueError as exc:
                problems.append(str(exc))
        avoid_text = cell(row, "avoid_combination").lower()
        if avoid_text not in _TRUE and avoid_text not in _FALSE:
            problems.append(f"avoid_combination {avoid_text!r} is not true or false")
        if problems:
            errors.extend(f"line {line}: {p}" for p in problems)
            continue
        a, b = ends["drug_a"], ends["drug_b"]
        if a.keys[0][0].startswith("food") and b.keys[0][0].startswith("food"):
            errors.append(f"line {line}: both sides are foods; the knowledge base holds drug interactions")
            continue
        for name, end in (("drug_a", a), ("drug_b", b)):
            if end.unresolved is not None:
                u = end.unresolved
                unresolved.append(UnresolvedName(line, profile.columns[name], u.text, u.reason, u.suggestions))
            if end.expanded:
                ingredients = tuple(k[1] for k in end.keys)
                expanded.append(ExpandedName(line, profile.columns[name], cell(row, name), ingredients))
        flagged = a.unresolved is not None or b.unresolved is not None
        src = cell(row, "source") or source
        food_side = a.keys[0][0].startswith("food") or b.keys[0][0].startswith("food")
        source_row = SourceRow(line, cell(row, "drug_a"), cell(row, "drug_b"), raw_severity, severity)
        made = 0
        for ka in a.keys:
            for kb in b.keys:
                if (a.expanded and kb in a.keys) or (b.expanded and ka in b.keys):
                    # "amoxicillin / clavulanate" with "amoxicillin": neither amoxicillin with itself nor
                    # amoxicillin with clavulanate (the product's own ingredients) is what the row says.
                    continue
                made += 1
                pid = pair_id(ka, kb, src)
                pair = InteractionPair(
                    id=pid,
                    a_kind=ka[0],
                    a=ka[1],
                    b_kind=kb[0],
                    b=kb[1],
                    severity=severity,
                    source_severity=raw_severity,
                    interaction_type=(
                        cell(row, "interaction_type") or ("FOOD_DRUG" if food_side else "DRUG_DRUG")
                    ).upper(),
                    evidence=evidence,
                    description=cell(row, "description"),
                    recommendation=cell(row, "recommendation"),
                    # A contraindicated pair is one to avoid unless the source says otherwise.
                    avoid_combination=avoid_text in _TRUE or (severity is Severity.CRITICAL and avoid_text == ""),
                    source=src,
                    unresolved=flagged,
                )
                groups.setdefault((pid, flagged), []).append(_Candidate(line, pair, source_row))
        if not made:
            notes.append(f"line {line}: both sides are the same ingredients once expanded; no pair stored")
    if errors:
        raise CsvImportError(errors)
    return _fold(groups, rows_read, unresolved, expanded, notes)


def _fold(
    groups: Mapping[tuple[str, bool], list[_Candidate]],
    rows_read: int,
    unresolved: list[UnresolvedName],
    expanded: list[ExpandedName],
    notes: list[str],
) -> ImportPlan:
    pairs: list[InteractionPair] = []
    folded: list[FoldedPair] = []
    shadowed = 0
    for (pid, flagged), candidates in groups.items():
        if flagged and (pid, False) in groups:
            # A name that did not resolve (a code that disagrees with its text, say) written as a
            # resolved pair's name: the resolved rows are the pair; the flagged ones stay in the
            # unresolved report only, so they can never lend the pair their content.
            shadowed += 1
            continue
        keys = sorted(candidates[0].pair.keys)
        for c in candidates:
            # Folding joins rows whose *resolved* endpoints are equal, never two different ingredients.
            if sorted(c.pair.keys) != keys:
                raise AssertionError(f"pair {pid}: lines {candidates[0].line} and {c.line} are different pairs")
        # The highest grade wins; among equal grades, the first row.
        kept = max(candidates, key=lambda c: (c.pair.severity, -c.line))
        pairs.append(kept.pair)
        rows = tuple(dict.fromkeys(c.row for c in candidates))
        if len(rows) > 1:
            a, b = keys
            folded.append(FoldedPair(a, b, kept.pair.source, kept.line, kept.pair.severity, rows, flagged))
    if shadowed:
        notes.append(
            f"{shadowed} flagged pair(s) not stored: a resolved row gives the same pair (see the unresolved report)"
        )
    return ImportPlan(
        pairs=tuple(pairs),
        rows_read=rows_read,
        unresolved=tuple(unresolved),
        folded=tuple(folded),
        expanded=tuple(expanded),
        notes=tuple(notes),
    )


# --------------------------------------------------------------------------------------------------
# Reports


UNRESOLVED_COLUMNS = ("line", "column", "text", "reason", "suggestions")


def _tsv_cell(value: str) -> str:
    return " ".join(str(value).replace("\t", " ").splitlines())


def unresolved_report_tsv(plan: ImportPlan) -> str:
    """The unresolved names, one a line: line, column, text, reason, suggestions (comma-separated)."""
    lines = ["\t".join(UNRESOLVED_COLUMNS)]
    for u in plan.unresolved:
        cells = (str(u.line), u.column, u.text, u.reason, ", ".join(u.suggestions))
        lines.append("\t".join(_tsv_cell(c) for c in cells))
    return "\n".join(lines) + "\n"


def _key(key: EntityKey) -> str:
    kind, name = key
    return name if kind == "ingredient" else f"{kind}:{name}"


def describe_folds(plan: ImportPlan, limit: int = 20) -> list[str]:
    """One line per folded pair: the grades of every source row and the one kept."""
    out = []
    for f in plan.folded[:limit]:
        rows = "; ".join(
            f"line {r.line} {r.drug_a} + {r.drug_b} {r.source_severity or '(no grade)'} -> {r.severity.name}"
            for r in f.rows
        )
        rule = "conflicting grades, kept the highest" if f.conflicting else "same grade"
        flag = " [unresolved]" if f.unresolved else ""
        out.append(f"folded {_key(f.a)} + {_key(f.b)}{flag}: {rows} ({rule}: {f.kept.name} from line {f.kept_line})")
    if len(plan.folded) > limit:
        out.append(f"... and {len(plan.folded) - limit} more folded pair(s)")
    return out


def describe_expansions(plan: ImportPlan, limit: int = 20) -> list[str]:
    out = [
        f"expanded line {e.line} {e.column} {e.text!r} -> one pair per ingredient: {', '.join(e.ingredients)}"
        for e in plan.expanded[:limit]
    ]
    if len(plan.expanded) > limit:
        out.append(f"... and {len(plan.expanded) - limit} more expanded combination(s)")
    return out
