"""Coded drug concepts (RxNorm, NDC), the vocabulary releases that brought them, and their history.

Revision ID: 0005_drug_concepts
Revises: 0004_audit_chain_nulls
Create Date: 2026-12-01

A concept is never deleted: a code a release no longer lists is retired (retired_release_id set),
and stays resolvable, because patients' records keep the codes they were written with. Every
change a release makes to a concept is a row in drug_concept_history, which nobody but the owner
can change.

Global reference data, like clinical.drug_ingredients: no tenant_id, no row-level security;
readable by every runtime role (authenticated), written only by the importer on the owner/admin
connection (`praneya knowledge rxnorm import`, `praneya knowledge vocabulary`).

Reminder: this migration must not break the release that is running while it is applied. It only
adds tables; the running release does not read them.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0005_drug_concepts"
down_revision: str | None = "0004_audit_chain_nulls"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UPGRADE = """
-- One row per release applied (an RxNorm RRF release, or the shipped table). Re-importing the same
-- files (same content_sha256 as the stream's latest release) adds no row. A release stream is
-- (source, kind): a release retires only codes its own stream brought.
CREATE TABLE clinical.vocabulary_releases (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    source          text NOT NULL,       -- 'RXNORM'
    version         text NOT NULL,       -- the release date read from the release ('2025-10-06'), else its folder name
    kind            text NOT NULL CHECK (kind IN ('full', 'prescribe', 'shipped')),
    content_sha256  text NOT NULL CHECK (content_sha256 ~ '^[0-9a-f]{64}$'),
    concept_count   bigint NOT NULL DEFAULT 0,    -- rows in drug_concepts once applied, active and retired
    counts          jsonb NOT NULL DEFAULT '{}',  -- per TTY: added, changed, reinstated, retired, unchanged
    imported_at     timestamptz NOT NULL DEFAULT now(),
    imported_by     text
);
CREATE INDEX idx_vocabulary_releases_stream ON clinical.vocabulary_releases (source, kind, id);

-- engine.knowledge.DrugConcept, one row per code. `ingredients` are the RXCUIs of the ingredients
-- (TTY IN) the concept contains; an NDC names the product it packages in `product`.
-- The *_release_id columns (here and in the history) name clinical.vocabulary_releases rows but are
-- not foreign keys: PostgreSQL checks a foreign key with one lookup per row written, which was more
-- than half the time of applying a full release (1.2 million rows). The importer is the only writer
-- and takes the id from the release row it inserts in the same transaction.
CREATE TABLE clinical.drug_concepts (
    system              text NOT NULL CHECK (system IN ('rxnorm', 'ndc')),
    code                text NOT NULL,
    tty                 text NOT NULL,
    name                text NOT NULL,
    ingredients         text[] NOT NULL DEFAULT '{}',
    product             text,
    strength            text,
    dose_form           text,
    unii                text,
    source              text NOT NULL,
    release_id          bigint NOT NULL,  -- the last release that listed it
    first_release_id    bigint NOT NULL,
    retired_release_id  bigint,           -- NULL while active
    active              boolean GENERATED ALWAYS AS (retired_release_id IS NULL) STORED,
    PRIMARY KEY (system, code),
    CONSTRAINT drug_concepts_code_shape CHECK (
        CASE system WHEN 'rxnorm' THEN code ~ '^[0-9]{1,10}$' ELSE code ~ '^[0-9]{11}$' END),
    CONSTRAINT drug_concepts_ndc_product CHECK (system <> 'ndc' OR product IS NOT NULL)
);
-- The NDCs of a product, the packs that contain it.
CREATE INDEX idx_drug_concepts_product ON clinical.drug_concepts (product) WHERE product IS NOT NULL;

-- Every change a release made to a concept. old_values/new_values hold the changed columns only;
-- an 'added' row holds none (the concept's first values are its row until its first change, whose
-- old_values keep them).
CREATE TABLE clinical.drug_concept_history (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    system       text NOT NULL,
    code         text NOT NULL,
    release_id   bigint NOT NULL,
    change       text NOT NULL CHECK (change IN ('added', 'renamed', 'ingredients_changed', 'changed', 'retired',
                                                 'reinstated')),
    old_values   jsonb,
    new_values   jsonb,
    recorded_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX idx_drug_concept_history_concept ON clinical.drug_concept_history (system, code, id);
CREATE INDEX idx_drug_concept_history_release ON clinical.drug_concept_history (release_id);

-- Concepts are retired, never deleted; their history is append-only. Only the owner (migrations)
-- may do either, so even the admin connection's superuser is refused by mistake.
CREATE FUNCTION clinical.refuse_vocabulary_change() RETURNS trigger
LANGUAGE plpgsql SET search_path = ''
AS $$
BEGIN
    IF current_user <> 'praneya_owner' THEN
        RAISE EXCEPTION 'clinical.%: % is not allowed (concepts are retired, history is append-only)',
            TG_TABLE_NAME, TG_OP USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
END
$$;
CREATE TRIGGER drug_concepts_never_deleted BEFORE DELETE ON clinical.drug_concepts
    FOR EACH ROW EXECUTE FUNCTION clinical.refuse_vocabulary_change();
CREATE TRIGGER drug_concept_history_append_only BEFORE UPDATE OR DELETE ON clinical.drug_concept_history
    FOR EACH ROW EXECUTE FUNCTION clinical.refuse_vocabulary_change();

-- Every runtime role reads the vocabulary (the service resolves codes with it); none writes it.
GRANT SELECT ON clinical.vocabulary_releases, clinical.drug_concepts, clinical.drug_concept_history
    TO authenticated;
"""

DOWNGRADE = """
DROP TABLE clinical.drug_concept_history;
DROP TABLE clinical.drug_concepts;
DROP TABLE clinical.vocabulary_releases;
DROP FUNCTION clinical.refuse_vocabulary_change();
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
