"""The clinical knowledge in PostgreSQL: drug vocabulary, interaction pairs, tenant overrides, rules.

Writes (vocabulary sync, CSV import, rule sync) are operator work on the admin connection, all or
nothing, idempotent. Reads build the engine's in-memory Knowledge and RuleSet; the service caches
them and rebuilds when their fingerprint changes.
"""

from __future__ import annotations

import hashlib
import json
import sys
from array import array
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, text

from engine.concept_store import ConceptRows
from engine.dose_limits import shipped_dose_knowledge
from engine.hepatic import shipped_hepatic_knowledge
from engine.knowledge import (
    AliasRecord,
    AllergenRecord,
    ConditionRecord,
    CrossReactivity,
    DrugClassRecord,
    DrugConcept,
    FoodRecord,
    IngredientRecord,
    InteractionKnowledge,
    InteractionPair,
    Knowledge,
    NdcIndex,
    PairOverride,
    Vocabulary,
    read_concept_lines,
)
from engine.model import EvidenceLevel, Severity
from engine.renal import shipped_renal_knowledge
from engine.rules import Rule, RuleSet
from store.rxnorm_import import ReleaseResult, apply_concepts

__all__ = [
    "ImportResult",
    "RuleSyncResult",
    "StoredRule",
    "clear_override",
    "import_interaction_pairs",
    "knowledge_fingerprint",
    "list_rules",
    "load_concepts",
    "load_knowledge",
    "load_ndc_products",
    "load_rules",
    "load_vocabulary",
    "plan_rule_sync",
    "rule_history",
    "rules_fingerprint",
    "set_override",
    "sync_rules",
    "sync_shipped_concepts",
    "sync_vocabulary",
    "vocabulary_version",
]


# -- vocabulary --------------------------------------------------------------------------------------


def sync_vocabulary(conn: Connection, vocabulary: Vocabulary) -> int:
    """Replaces the stored vocabulary with this one, in the caller's transaction. Returns rows written."""
    for table in (
        "drug_classes",
        "drug_ingredients",
        "drug_aliases",
        "foods",
        "allergen_groups",
        "condition_terms",
        "drug_salt_words",
    ):
        conn.execute(text(f"DELETE FROM clinical.{table}"))  # noqa: S608 - fixed table names
    rows = 0

    def insert(sql: str, params: list[dict[str, Any]]) -> None:
        nonlocal rows
        if params:
            conn.execute(text(sql), params)
            rows += len(params)

    insert(
        # atc_code (a column of migration 0001) stays NULL: no WHO ATC code is shipped (SOURCES.md)
        "INSERT INTO clinical.drug_classes (id, name, kind) VALUES (:id, :name, :kind)",
        [{"id": c.id, "name": c.name, "kind": c.kind} for c in vocabulary.classes.values()],
    )
    insert(
        "INSERT INTO clinical.drug_ingredients (name, classes) VALUES (:n, :c)",
        # the curated ingredients only: the RxNorm ones live in drug_concepts
        [{"n": i.name, "c": list(i.classes)} for i in vocabulary.curated_ingredients],
    )
    insert(
        "INSERT INTO clinical.drug_aliases (alias, ingredients) VALUES (:a, :i)",
        [{"a": a, "i": list(i)} for a, i in vocabulary.aliases.items()],
    )
    insert(
        "INSERT INTO clinical.foods (name, groups) VALUES (:n, :g)",
        [{"n": f.name, "g": list(f.groups)} for f in vocabulary.foods.values()],
    )
    insert(
        "INSERT INTO clinical.allergen_groups (name, category, definition)"
        " VALUES (:n, CAST(:c AS public.allergen_category), CAST(:d AS jsonb))",
        [
            {
                "n": a.name,
                "c": a.category if a.category in _ALLERGEN_CATEGORIES else "OTHER",
                "d": json.dumps(_allergen_definition(a)),
            }
            for a in vocabulary.allergens.values()
        ],
    )
    insert(
        "INSERT INTO clinical.condition_terms (id, synonyms, icd10, snomed) VALUES (:id, :s, :i, :sct)",
        [
            {"id": c.id, "s": list(c.synonyms), "i": list(c.icd10), "sct": list(c.snomed)}
            for c in vocabulary.conditions.values()
        ],
    )
    insert(
        "INSERT INTO clinical.drug_salt_words (word) VALUES (:w)",
        [{"w": w} for w in sorted(vocabulary.salt_words)],
    )
    return rows


_ALLERGEN_CATEGORIES = ("DRUG", "FOOD", "ENVIRONMENTAL", "INSECT", "LATEX", "OTHER")


def _allergen_definition(a: AllergenRecord) -> dict[str, Any]:
    return {
        "category": a.category,
        "ingredients": list(a.match_ingredients),
        "classes": list(a.match_classes),
        "foods": list(a.match_foods),
        "food_groups": list(a.match_food_groups),
        "synonyms": list(getattr(a, "synonyms", ())),
        "cross": [
            {
                "target_kind": c.target_kind,
                "target": c.target,
                "severity": c.severity.name,
                "note": c.note,
                "relation": c.relation,
            }
            for c in a.cross
        ],
        "member_grade": a.member_grade.name if a.member_grade is not None else None,
        "note": a.note,
    }


def _allergen_from_row(name: str, d: dict[str, Any]) -> AllergenRecord:
    return AllergenRecord(
        name=name,
        category=d["category"],
        match_ingredients=tuple(d["ingredients"]),
        match_classes=tuple(d["classes"]),
        match_foods=tuple(d["foods"]),
        match_food_groups=tuple(d["food_groups"]),
        cross=tuple(
            CrossReactivity(
                c["target_kind"], c["target"], Severity[c["severity"]], c["note"], c.get("relation", "cross")
            )
            for c in d["cross"]
        ),
        synonyms=tuple(d.get("synonyms", ())),
        # Rows written before allergy classes carry neither: no class extension, no note.
        member_grade=Severity[d["member_grade"]] if d.get("member_grade") else None,
        note=d.get("note", ""),
    )


# -- drug concepts (RxNorm, NDC) ---------------------------------------------------------------------


def sync_shipped_concepts(
    conn: Connection, concepts: Iterable[DrugConcept], version: str, *, actor: str | None = None
) -> ReleaseResult:
    """Applies the shipped concept table (rules/knowledge/rxnorm.tsv and its NDCs) as a release of kind
    'shipped', through the same path as an RxNorm RRF import (store.rxnorm_import): the same table
    twice changes nothing, a code it no longer lists is retired, and a code an RxNorm release
    imported stays as that release has it."""
    return apply_concepts(conn, concepts, version=version, kind="shipped", actor=actor)


def load_concepts(conn: Connection, *, systems: Sequence[str] = ("rxnorm", "ndc")) -> list[DrugConcept]:
    """The stored concepts of these systems, active and retired (active=False: retired by its source,
    kept because records still carry the code). Streamed; repeated strings interned."""
    result = conn.execute(
        text(
            "SELECT system, code, tty, name, ingredients, product, strength, dose_form, unii, active, source"
            " FROM clinical.drug_concepts WHERE system = ANY(:systems) ORDER BY system DESC, code"
        ),
        {"systems": list(systems)},
        execution_options={"stream_results": True, "max_row_buffer": 5000},
    )
    intern = sys.intern
    return [
        DrugConcept(
            system=intern(r[0]),
            code=r[1],
            tty=intern(r[2]),
            name=r[3],
            ingredients=tuple(intern(i) for i in r[4]),
            product=r[5],
            strength=intern(r[6]) if r[6] is not None else None,
            dose_form=intern(r[7]) if r[7] is not None else None,
            unii=r[8],
            active=bool(r[9]),
            source=intern(r[10]),
        )
        for r in result
    ]


def load_ndc_products(conn: Connection) -> list[tuple[str, str]]:
    """(NDC, product RXCUI) for every stored NDC, active and retired: what engine.knowledge.NdcIndex
    holds, without a DrugConcept per NDC."""
    return [
        (r[0], r[1])
        for r in conn.execute(
            text("SELECT code, product FROM clinical.drug_concepts WHERE system = 'ndc'"),
            execution_options={"stream_results": True, "max_row_buffer": 20000},
        )
    ]


# -- interaction pairs -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImportResult:
    rows: int
    inserted: int
    updated: int
    unchanged: int
    flagged: int = 0  # pairs of unresolved names, stored for review and never matched


def _pair_hash(p: InteractionPair) -> str:
    doc = [
        p.a_kind,
        p.a,
        p.b_kind,
        p.b,
        p.severity.name,
        p.source_severity,
        p.interaction_type,
        p.evidence.name,
        p.description,
        p.recommendation,
        p.avoid_combination,
        p.source,
    ]
    if p.unresolved:  # only then, so the hashes of pairs stored before the flag existed still match
        doc.append("unresolved")
    return hashlib.sha256(json.dumps(doc).encode()).hexdigest()


def _ordered(p: InteractionPair) -> tuple[str, str, str, str]:
    a, b = (p.a_kind, p.a), (p.b_kind, p.b)
    (ak, an), (bk, bn) = sorted([a, b])
    return ak, an, bk, bn


_INTERACTION_TYPES = ("PHARMACODYNAMIC", "PHARMACOKINETIC", "FOOD", "DUPLICATE", "OTHER")


def import_interaction_pairs(
    conn: Connection,
    pairs: Sequence[InteractionPair],
    *,
    source: str,
    file_sha256: str,
    actor: str | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> ImportResult:
    """Upserts parsed pairs in one transaction (COPY into a temporary table, then one merge).

    Re-importing the same file changes nothing: unchanged rows keep their content hash and are not
    rewritten.
    """
    conn.execute(
        text("CREATE TEMPORARY TABLE pairs_in (LIKE clinical.interaction_pairs INCLUDING DEFAULTS) ON COMMIT DROP")
    )
    raw = conn.connection.driver_connection
    assert raw is not None
    done = 0
    with (
        raw.cursor() as cur,
        cur.copy(
            "COPY pairs_in (id, a_kind, a_name, b_kind, b_name, severity, source_severity, interaction_type,"
            " evidence_level, description, recommendation, avoid_combination, source, content_hash, unresolved)"
            " FROM STDIN"
        ) as copy,
    ):
        for p in pairs:
            ak, an, bk, bn = _ordered(p)
            itype = p.interaction_type.upper() if p.interaction_type.upper() in _INTERACTION_TYPES else "OTHER"
            copy.write_row(
                (
                    p.id,
                    ak,
                    an,
                    bk,
                    bn,
                    p.severity.name,
                    p.source_severity,
                    itype,
                    p.evidence.name,
                    p.description,
                    p.recommendation,
                    p.avoid_combination,
                    p.source or source,
                    _pair_hash(p),
                    p.unresolved,
                )
            )
            done += 1
            if on_progress and done % 5000 == 0:
                on_progress(done, len(pairs))
    if on_progress:
        on_progress(done, len(pairs))
    counts = conn.execute(
        text("""
        WITH merged AS (
            INSERT INTO clinical.interaction_pairs AS t (id, a_kind, a_name, b_kind, b_name, severity,
                source_severity, interaction_type, evidence_level, description, recommendation, avoid_combination,
                source, content_hash, unresolved)
            SELECT id, a_kind, a_name, b_kind, b_name, severity, source_severity, interaction_type, evidence_level,
                   description, recommendation, avoid_combination, source, content_hash, unresolved FROM pairs_in
            ON CONFLICT (id) DO UPDATE SET severity = EXCLUDED.severity, source_severity = EXCLUDED.source_severity,
                interaction_type = EXCLUDED.interaction_type, evidence_level = EXCLUDED.evidence_level,
                description = EXCLUDED.description, recommendation = EXCLUDED.recommendation,
                avoid_combination = EXCLUDED.avoid_combination, content_hash = EXCLUDED.content_hash,
                unresolved = EXCLUDED.unresolved, imported_at = now()
            WHERE t.content_hash IS DISTINCT FROM EXCLUDED.content_hash
            RETURNING (xmax = 0) AS inserted
        )
        SELECT count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE NOT inserted) FROM merged
    """)
    ).one()
    inserted, updated = int(counts[0]), int(counts[1])
    result = ImportResult(
        len(pairs), inserted, updated, len(pairs) - inserted - updated, sum(1 for p in pairs if p.unresolved)
    )
    conn.execute(
        text(
            "INSERT INTO clinical.knowledge_imports (source, file_sha256, rows_total, rows_changed,"
            " imported_by) VALUES (:s, :h, :n, :c, :by)"
        ),
        {"s": source, "h": file_sha256, "n": len(pairs), "c": inserted + updated, "by": actor},
    )
    return result


def set_override(
    conn: Connection,
    *,
    tenant_id: str,
    pair_id: str,
    severity: str | None,
    disabled: bool,
    reason: str,
    actor: str | None,
) -> None:
    """A tenant's own decision about one pair, with an audit row of the change."""
    if conn.execute(text("SELECT 1 FROM clinical.interaction_pairs WHERE id = :p"), {"p": pair_id}).first() is None:
        raise LookupError(f"--pair: no interaction pair {pair_id!r}")
    if conn.execute(text("SELECT 1 FROM public.tenants WHERE id = :t"), {"t": tenant_id}).first() is None:
        raise LookupError(f"--tenant: no tenant {tenant_id!r}")
    conn.execute(
        text("""
        INSERT INTO clinical.interaction_overrides (tenant_id, pair_id, severity, disabled, reason, updated_by)
        VALUES (:t, :p, CAST(:s AS public.rule_severity), :d, :r, :by)
        ON CONFLICT (tenant_id, pair_id) DO UPDATE SET severity = EXCLUDED.severity, disabled = EXCLUDED.disabled,
            reason = EXCLUDED.reason, updated_by = EXCLUDED.updated_by, updated_at = now()
    """),
        {"t": tenant_id, "p": pair_id, "s": severity, "d": disabled, "r": reason, "by": actor},
    )
    conn.execute(
        text("""
        INSERT INTO audit.audit_logs (tenant_id, user_id, action, resource_type, resource_id, new_values,
            phi_accessed, risk_score, compliance_flags)
        VALUES (:t, NULL, 'KNOWLEDGE_OVERRIDE', 'clinical.interaction_overrides', :p, CAST(:nv AS jsonb), false,
            0.3, ARRAY['RULE_CHANGE'])
    """),
        {
            "t": tenant_id,
            "p": pair_id,
            "nv": json.dumps({"severity": severity, "disabled": disabled, "updated_by": actor}),
        },
    )


def clear_override(conn: Connection, *, tenant_id: str, pair_id: str) -> bool:
    deleted = conn.execute(
        text("DELETE FROM clinical.interaction_overrides WHERE tenant_id = :t AND pair_id = :p RETURNING pair_id"),
        {"t": tenant_id, "p": pair_id},
    ).first()
    return deleted is not None


def knowledge_fingerprint(conn: Connection, tenant_id: str | None) -> str:
    row = conn.execute(
        text("""
        SELECT (SELECT count(*) FROM clinical.interaction_pairs) || ':' ||
               COALESCE((SELECT max(id) FROM clinical.knowledge_imports), 0) || ':' ||
               (SELECT count(*) FROM clinical.drug_ingredients) || ':' ||
               -- concepts (active and retired) and the release that last changed them: every write to
               -- drug_concepts is a release, which records the count, so no count(*) over them here
               COALESCE((SELECT concept_count || '/' || id FROM clinical.vocabulary_releases
                         ORDER BY id DESC LIMIT 1), '0/0') || ':' ||
               (SELECT md5(COALESCE(string_agg(pair_id || COALESCE(severity::text, '') || disabled::text
                                               || updated_at::text, ',' ORDER BY pair_id), ''))
                FROM clinical.interaction_overrides WHERE tenant_id = :t)
    """),
        {"t": tenant_id},
    ).scalar_one()
    return str(row)


def vocabulary_version(conn: Connection) -> str:
    """The vocabulary an evaluation names: the concept release last applied and the curated content."""
    row = conn.execute(
        text("""
        SELECT (SELECT lower(source) || '-' || kind || '-' || version || '.' || id
                  FROM clinical.vocabulary_releases ORDER BY id DESC LIMIT 1) AS release,
               (SELECT md5(string_agg(name || ':' || array_to_string(classes, ','), ';' ORDER BY name))
                  FROM clinical.drug_ingredients) AS curated
    """)
    ).one()
    return f"{row.release or 'none'}+curated:{(row.curated or '')[:12]}"


def load_vocabulary(conn: Connection) -> Vocabulary:
    """The drug vocabulary from the database: the curated tables, the RxNorm concepts (active and
    retired) and the NDC index. Global (no tenant): a worker builds it once and shares it."""
    classes = [
        # every class is CLINICAL (a row an older release wrote as ATC is read as CLINICAL too)
        DrugClassRecord(r.id, r.name)
        for r in conn.execute(text("SELECT id, name FROM clinical.drug_classes"))
    ]
    ingredients = [
        IngredientRecord(r.name, tuple(r.classes))
        for r in conn.execute(text("SELECT name, classes FROM clinical.drug_ingredients"))
    ]
    aliases = [
        AliasRecord(r.alias, tuple(r.ingredients))
        for r in conn.execute(text("SELECT alias, ingredients FROM clinical.drug_aliases"))
    ]
    foods = [FoodRecord(r.name, tuple(r.groups)) for r in conn.execute(text("SELECT name, groups FROM clinical.foods"))]
    allergens = [
        _allergen_from_row(r.name, r.definition)
        for r in conn.execute(text("SELECT name, definition FROM clinical.allergen_groups"))
    ]
    conditions = [
        ConditionRecord(r.id, tuple(r.synonyms), tuple(r.icd10), tuple(r.snomed))
        for r in conn.execute(text("SELECT id, synonyms, icd10, snomed FROM clinical.condition_terms"))
    ]
    salts = conn.execute(text("SELECT word FROM clinical.drug_salt_words")).scalars().all()
    return Vocabulary(
        ingredients=ingredients,
        classes=classes,
        aliases=aliases,
        foods=foods,
        allergens=allergens,
        conditions=conditions,
        salt_words=salts,
        concepts=_load_rxnorm_concepts(conn),
        ndc=_load_ndc_index(conn),
        version=vocabulary_version(conn),
    )


def _load_rxnorm_concepts(conn: Connection) -> ConceptRows:
    """The RxNorm concepts as the shipped table's lines (one COPY, read row by row as it arrives by
    the engine's own reader straight into the vocabulary's columns), several times faster than a row
    object each, and never the whole table as one text nor a DrugConcept per row. Only backslashes
    are escaped in COPY's text format, and the query leaves no NULLs."""
    raw = conn.connection.driver_connection
    assert raw is not None
    query = (
        "SELECT system, code, tty, name, array_to_string(ingredients, ','), coalesce(product, ''),"
        " coalesce(strength, ''), coalesce(dose_form, ''), coalesce(unii, ''), active::int, source"
        " FROM clinical.drug_concepts WHERE system = 'rxnorm'"
    )

    def lines() -> Iterator[str]:
        rest = b""
        with raw.cursor().copy(f"COPY ({query}) TO STDOUT") as copy:
            for data in copy:  # a row per message from PostgreSQL; a split row is joined all the same
                rows = (rest + bytes(data)).split(b"\n")
                rest = rows.pop()
                for row in rows:
                    line = row.decode("utf-8")
                    yield line.replace("\\\\", "\\") if "\\" in line else line
        if rest:
            yield rest.decode("utf-8")

    return read_concept_lines(lines(), where="clinical.drug_concepts")


# The NDCs and their products in NDC order, 4,096 a row as two byte strings of big-endian 64-bit
# integers (a row is a COPY message of 64 kB): a few dozen messages, not one per NDC.
_NDC_BLOCKS = """
COPY (
    SELECT string_agg(int8send(ndc), ''::bytea ORDER BY ndc), string_agg(int8send(product), ''::bytea ORDER BY ndc)
    FROM (SELECT code::bigint AS ndc, product::bigint AS product,
                 (row_number() OVER (ORDER BY code::bigint) - 1) / 4096 AS block
          FROM clinical.drug_concepts WHERE system = 'ndc' AND product IS NOT NULL) AS numbered
    GROUP BY block ORDER BY block
) TO STDOUT (FORMAT binary)
"""
_PGCOPY_HEADER = b"PGCOPY\n\xff\r\n\x00"


def _load_ndc_index(conn: Connection) -> NdcIndex:
    """Over 200,000 NDCs and their products, packed by PostgreSQL into blocks of 64-bit integers
    and streamed by one binary COPY straight into the index's arrays: no string, tuple or integer
    object per NDC is made, and no buffer larger than a block (64 kB), so loading takes a fraction
    of a second and leaves nothing behind in the worker's heap."""
    raw = conn.connection.driver_connection
    assert raw is not None

    def blocks() -> Iterator[tuple[array[int], array[int]]]:
        pending = bytearray()
        header = False
        with raw.cursor().copy(_NDC_BLOCKS) as copy:
            for data in copy:
                pending += data
                if not header:
                    if len(pending) < 19:
                        continue
                    if not pending.startswith(_PGCOPY_HEADER):
                        raise RuntimeError("unexpected COPY BINARY framing reading NDCs")
                    extension = int.from_bytes(pending[15:19], "big")
                    if len(pending) < 19 + extension:
                        continue
                    del pending[: 19 + extension]
                    header = True
                while (block := _ndc_block(pending)) is not None:
                    yield block
        if not header or pending != b"\xff\xff":
            raise RuntimeError("unexpected COPY BINARY framing reading NDCs")

    return NdcIndex.from_blocks(blocks())


def _ndc_block(pending: bytearray) -> tuple[array[int], array[int]] | None:
    """The first row of `pending`, when it is all there (taken out of it): its NDCs and products."""
    if len(pending) < 2 or pending[:2] == b"\xff\xff":  # not yet a row, or the trailer
        return None
    if pending[:2] != b"\x00\x02":
        raise RuntimeError("unexpected COPY BINARY row reading NDCs")
    spans = []
    at = 2
    for _ in range(2):
        if len(pending) < at + 4:
            return None
        size = int.from_bytes(pending[at : at + 4], "big", signed=True)
        if size < 0 or size % 8:
            raise RuntimeError("unexpected COPY BINARY field reading NDCs")
        spans.append((at + 4, at + 4 + size))
        at += 4 + size
    if len(pending) < at:
        return None
    columns = []
    for start, end in spans:
        column: array[int] = array("q")
        column.frombytes(pending[start:end])
        if sys.byteorder == "little":
            column.byteswap()
        columns.append(column)
    del pending[:at]
    return columns[0], columns[1]


def load_knowledge(
    conn: Connection,
    tenant_id: str | None,
    shared_pairs: tuple[InteractionPair, ...] | None = None,
    shared_vocabulary: Vocabulary | None = None,
) -> Knowledge:
    """Builds the engine's Knowledge from the database (tenant overrides applied when a tenant is given)."""
    vocabulary = shared_vocabulary if shared_vocabulary is not None else load_vocabulary(conn)
    pairs = shared_pairs if shared_pairs is not None else load_pairs(conn)
    overrides: Iterable[PairOverride] = ()
    if tenant_id is not None:
        overrides = [
            PairOverride(r.pair_id, Severity[r.severity] if r.severity else None, r.disabled)
            for r in conn.execute(
                text(
                    "SELECT pair_id, severity::text AS severity, disabled"
                    " FROM clinical.interaction_overrides WHERE tenant_id = :t"
                ),
                {"t": tenant_id},
            )
        ]
    # Dose limits are shipped knowledge (rules/knowledge/dose_limits.yaml), read once per process; the
    # answer's knowledge version names them beside the database's fingerprint.
    dose = shipped_dose_knowledge()
    renal = shipped_renal_knowledge()
    version = knowledge_fingerprint(conn, tenant_id)
    hepatic = shipped_hepatic_knowledge()
    if renal is not None:
        version = f"{version}+{renal.version}"
    if hepatic is not None:
        version = f"{version}+{hepatic.version}"
    return Knowledge(
        vocabulary=vocabulary,
        interactions=InteractionKnowledge.from_pairs(pairs, overrides),
        allergens=vocabulary.allergens,
        version=f"{version}+{dose.version}" if dose is not None else version,
        dose=dose,
        renal=renal,
        hepatic=hepatic,
    )


def load_pairs(conn: Connection) -> tuple[InteractionPair, ...]:
    """Every pair the engine may match, streamed: pairs of unresolved names stay in the table for
    review and are not loaded. Repeated strings (kinds, names, grades, sources) are interned: with
    150,000 pairs they are most of the memory a worker holds."""
    # Streaming is an option of this one statement: Connection.execution_options() would switch the
    # caller's whole connection to server-side cursors, and its next statement (an INSERT) would fail.
    result = conn.execute(
        text(
            "SELECT id, a_kind, a_name, b_kind, b_name, severity::text, source_severity, interaction_type::text,"
            " evidence_level::text, description, recommendation, avoid_combination, source"
            " FROM clinical.interaction_pairs WHERE NOT unresolved"
        ),
        execution_options={"stream_results": True, "max_row_buffer": 5000},
    )
    intern = sys.intern
    severities = {s.name: s for s in Severity}
    evidence = {e.name: e for e in EvidenceLevel}
    return tuple(
        InteractionPair(
            r[0],
            intern(r[1]),
            intern(r[2]),
            intern(r[3]),
            intern(r[4]),
            severities[r[5]],
            intern(r[6]),
            intern(r[7]),
            evidence[r[8]],
            # Class-level knowledge expanded to pairs repeats its texts thousands of times: one copy each.
            intern(r[9]),
            intern(r[10]),
            r[11],
            intern(r[12]),
        )
        for r in result
    )


# -- rules ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RuleSyncResult:
    created: list[str]
    updated: list[str]
    unchanged: list[str]
    # Live rules of the scope whose file is not among those synced: retired with retire_missing,
    # otherwise listed (they stay live).
    missing: list[str] = field(default_factory=list)
    retired: list[str] = field(default_factory=list)
    # What a sync would refuse: content changed without a version bump ("id: why").
    refused: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class StoredRule:
    rule_id: str  # the rule's own id (rule_key)
    scope: str  # "global" or the tenant id
    version: int
    status: str
    synced_by: str | None
    synced_at: Any  # datetime of the version row


def _scope_rows(conn: Connection, tenant_id: str | None) -> dict[str, Any]:
    rows = conn.execute(
        text(
            "SELECT id, rule_key, version, status::text AS status, content_hash, definition"
            " FROM clinical.clinical_rules WHERE tenant_id IS NOT DISTINCT FROM :t"
        ),
        {"t": tenant_id},
    ).all()
    return {row.rule_key: row for row in rows}


def _stored(row: Any) -> StoredRule:
    return StoredRule(row.rule_key, row.tenant_id or "global", row.version, row.status, row.synced_by, row.synced_at)


def _missing(conn: Connection, rules: Sequence[Rule], tenant_id: str | None) -> list[str]:
    synced = {r.id for r in rules}
    stored = _scope_rows(conn, tenant_id)
    return sorted(k for k, row in stored.items() if k not in synced and row.status != "retired")


def plan_rule_sync(conn: Connection, rules: Sequence[Rule], *, tenant_id: str | None) -> RuleSyncResult:
    """What `sync_rules` would do with these rules, without writing: created, updated, unchanged,
    refused (changed without a version bump) and missing (live in the scope, no longer in the files;
    `retired` is what a sync with retire_missing would retire, the same list)."""
    stored = _scope_rows(conn, tenant_id)
    result = RuleSyncResult([], [], [], [], [], [])
    for rule in rules:
        current = stored.get(rule.id)
        digest = _content_hash(_synced_document(rule))
        if current is None:
            result.created.append(rule.id)
        elif current.content_hash == digest:
            result.unchanged.append(rule.id)
        elif rule.version <= current.version:
            result.refused.append(f"{rule.id}: {_version_problem(rule, current)}")
        else:
            result.updated.append(rule.id)
    result.missing.extend(_missing(conn, rules, tenant_id))
    result.retired.extend(result.missing)
    return result


def list_rules(conn: Connection, tenant_id: str | None, *, include_global: bool = True) -> list[StoredRule]:
    """What is stored (live, shadow and retired), with who synced its current version and when."""
    rows = conn.execute(
        text("""
        SELECT r.rule_key, r.tenant_id, r.version, r.status::text AS status, v.synced_by, v.synced_at
          FROM clinical.clinical_rules r
          LEFT JOIN clinical.clinical_rule_versions v ON v.rule_id = r.id AND v.version = r.version
         WHERE r.tenant_id IS NOT DISTINCT FROM :t OR (:g AND r.tenant_id IS NULL)
         ORDER BY r.rule_key, r.tenant_id NULLS FIRST
        """),
        {"t": tenant_id, "g": include_global},
    ).all()
    return [_stored(r) for r in rows]


def rule_history(conn: Connection, tenant_id: str | None, rule_key: str | None = None) -> list[StoredRule]:
    """Every stored version of the scope's rules (or of one), oldest first, with who synced it and when."""
    rows = conn.execute(
        text("""
        SELECT r.rule_key, r.tenant_id, v.version, COALESCE(v.definition->>'status', 'active') AS status,
               v.synced_by, v.synced_at
          FROM clinical.clinical_rule_versions v
          JOIN clinical.clinical_rules r ON r.id = v.rule_id
         WHERE r.tenant_id IS NOT DISTINCT FROM :t AND (CAST(:k AS text) IS NULL OR r.rule_key = :k)
         ORDER BY r.rule_key, v.version
        """),
        {"t": tenant_id, "k": rule_key},
    ).all()
    return [_stored(r) for r in rows]


def _content_hash(document: Any) -> str:
    return hashlib.sha256(json.dumps(document, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _synced_document(rule: Rule) -> dict[str, Any]:
    return {k: v for k, v in dict(rule.document).items() if k != "cases"}


def _version_problem(rule: Rule, current: Any) -> str:
    if current.status == "retired":
        return (
            f"it was retired at version {current.version}; to bring it back, set version to"
            f" {current.version + 1} or above"
        )
    return (
        f"content changed but version {rule.version} is not above the stored version {current.version};"
        " bump `version`"
    )


def sync_rules(
    conn: Connection,
    rules: Sequence[Rule],
    *,
    tenant_id: str | None,
    actor: str | None = None,
    retire_missing: bool = False,
) -> RuleSyncResult:
    """Upserts rules (global when tenant_id is None) with version history, one audit row per change.

    The rules given are the scope's whole rule set: a live rule of the scope that is not among them
    (its file was removed) is retired with `retire_missing`, otherwise listed in `missing` and left
    live. The caller validates every rule and runs its cases first (a failure stops the sync before
    this runs) and owns the transaction, so a failure here writes nothing. Unchanged rules are not
    touched.
    """
    created: list[str] = []
    updated: list[str] = []
    unchanged: list[str] = []
    for rule in rules:
        doc = _synced_document(rule)
        digest = _content_hash(doc)
        scope = tenant_id or "global"
        row_id = f"{scope}:{rule.id}"
        current = conn.execute(
            text("SELECT version, content_hash, status::text AS status FROM clinical.clinical_rules WHERE id = :id"),
            {"id": row_id},
        ).one_or_none()
        if current is not None and current.content_hash == digest:
            unchanged.append(rule.id)
            continue
        if current is not None and rule.version <= current.version:
            raise ValueError(f"rule {rule.id}: {_version_problem(rule, current)}")
        params = {
            "id": row_id,
            "t": tenant_id,
            "key": rule.id,
            "v": rule.version,
            "type": rule.type,
            "name": rule.title,
            "desc": rule.description,
            "cond": json.dumps(rule.when),
            "act": json.dumps(
                {
                    "kind": rule.kind.value,
                    "summary": rule.summary,
                    "detail": rule.detail,
                    "recommendation": rule.recommendation,
                    "references": list(rule.references),
                }
            ),
            "applies": json.dumps(doc.get("applies_to", {})),
            "sev": rule.severity.name,
            "ev": rule.evidence.name,
            "tier": rule.min_tier,
            "status": rule.status,
            "doc": json.dumps(doc),
            "hash": digest,
        }
        conn.execute(
            text("""
            INSERT INTO clinical.clinical_rules (id, tenant_id, rule_key, version, rule_type, name, description,
                conditions, actions, applies_to, severity, evidence_level, min_tier, status, definition, content_hash)
            VALUES (:id, :t, :key, :v, CAST(:type AS public.clinical_rule_type), :name, :desc, CAST(:cond AS jsonb),
                CAST(:act AS jsonb), CAST(:applies AS jsonb), CAST(:sev AS public.rule_severity),
                CAST(:ev AS public.evidence_level), CAST(:tier AS public.subscription_tier),
                CAST(:status AS public.rule_status), CAST(:doc AS jsonb), :hash)
            ON CONFLICT (id) DO UPDATE SET version = EXCLUDED.version, rule_type = EXCLUDED.rule_type,
                name = EXCLUDED.name, description = EXCLUDED.description, conditions = EXCLUDED.conditions,
                actions = EXCLUDED.actions, applies_to = EXCLUDED.applies_to, severity = EXCLUDED.severity,
                evidence_level = EXCLUDED.evidence_level, min_tier = EXCLUDED.min_tier, status = EXCLUDED.status,
                definition = EXCLUDED.definition, content_hash = EXCLUDED.content_hash, updated_at = now()
        """),
            params,
        )
        conn.execute(
            text(
                "INSERT INTO clinical.clinical_rule_versions (rule_id, version, tenant_id, definition,"
                " content_hash, synced_by) VALUES (:id, :v, :t, CAST(:doc AS jsonb), :hash, :by)"
            ),
            {**params, "by": actor},
        )
        conn.execute(
            text("""
            INSERT INTO audit.audit_logs (tenant_id, user_id, action, resource_type, resource_id, new_values,
                details, phi_accessed, risk_score, compliance_flags)
            VALUES (:t, NULL, :action, 'clinical.clinical_rules', :id, CAST(:nv AS jsonb), CAST(:det AS jsonb),
                false, 0.1, ARRAY['RULE_CHANGE'])
        """),
            {
                "t": tenant_id,
                "action": "RULE_CREATED" if current is None else "RULE_UPDATED",
                "id": row_id,
                "nv": json.dumps({"version": rule.version, "content_hash": digest, "status": rule.status}),
                "det": json.dumps(
                    {"synced_by": actor, "previous_version": None if current is None else current.version}
                ),
            },
        )
        (created if current is None else updated).append(rule.id)
    missing = _missing(conn, rules, tenant_id)
    retired = _retire(conn, missing, tenant_id=tenant_id, actor=actor) if retire_missing else []
    return RuleSyncResult(created, updated, unchanged, [] if retire_missing else missing, retired)


def _retire(conn: Connection, rule_keys: Sequence[str], *, tenant_id: str | None, actor: str | None) -> list[str]:
    """Retire rules whose file is gone. A retirement is a new version (the stored one plus one, status
    retired) in the history, so who retired a rule and when is kept like any other change, and
    bringing it back takes a version above it."""
    scope = tenant_id or "global"
    for key in rule_keys:
        row_id = f"{scope}:{key}"
        row = conn.execute(
            text("SELECT version, definition FROM clinical.clinical_rules WHERE id = :id FOR UPDATE"), {"id": row_id}
        ).one()
        version = row.version + 1
        doc = dict(row.definition, version=version, status="retired")
        digest = _content_hash(doc)
        params = {"id": row_id, "t": tenant_id, "v": version, "doc": json.dumps(doc), "hash": digest}
        conn.execute(
            text(
                "UPDATE clinical.clinical_rules SET version = :v, status = 'retired', definition = CAST(:doc AS jsonb),"
                " content_hash = :hash, updated_at = now() WHERE id = :id"
            ),
            params,
        )
        conn.execute(
            text(
                "INSERT INTO clinical.clinical_rule_versions (rule_id, version, tenant_id, definition,"
                " content_hash, synced_by) VALUES (:id, :v, :t, CAST(:doc AS jsonb), :hash, :by)"
            ),
            {**params, "by": actor},
        )
        conn.execute(
            text("""
            INSERT INTO audit.audit_logs (tenant_id, user_id, action, resource_type, resource_id, new_values,
                details, phi_accessed, risk_score, compliance_flags)
            VALUES (:t, NULL, 'RULE_RETIRED', 'clinical.clinical_rules', :id, CAST(:nv AS jsonb), CAST(:det AS jsonb),
                false, 0.1, ARRAY['RULE_CHANGE'])
        """),
            {
                "t": tenant_id,
                "id": row_id,
                "nv": json.dumps({"version": version, "content_hash": digest, "status": "retired"}),
                "det": json.dumps({"synced_by": actor, "previous_version": row.version, "reason": "file removed"}),
            },
        )
    return list(rule_keys)


def rules_fingerprint(conn: Connection, tenant_id: str | None) -> str:
    return str(
        conn.execute(
            text(
                "SELECT md5(COALESCE(string_agg(id || ':' || content_hash, ',' ORDER BY id), ''))"
                " FROM clinical.clinical_rules WHERE tenant_id IS NULL OR tenant_id = :t"
            ),
            {"t": tenant_id},
        ).scalar_one()
    )


def load_rules(conn: Connection, tenant_id: str | None) -> RuleSet:
    """Global rules, each replaced by the tenant's own rule of the same id when it has one."""
    rows = conn.execute(
        text(
            "SELECT rule_key, tenant_id, definition FROM clinical.clinical_rules"
            " WHERE (tenant_id IS NULL OR tenant_id = :t) AND status <> 'retired'"
            " ORDER BY rule_key, tenant_id NULLS FIRST"
        ),
        {"t": tenant_id},
    ).all()
    chosen: dict[str, Any] = {}
    for row in rows:
        chosen[row.rule_key] = row.definition  # the tenant row comes last and wins
    rules = [Rule.from_dict(doc) for doc in chosen.values()]
    return RuleSet.build(rules, version=rules_fingerprint(conn, tenant_id))
