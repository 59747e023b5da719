"""`praneya audit seal | verify`: the tamper-evident audit log (store/audit_chain.py) and its
anchor outside the database (store/audit_anchor.py).

Both run on the admin connection (DATABASE_URL) as praneya_owner: sealing inserts into
audit.audit_seals, which only the owner writes, and verification reads every tenant's rows, which
the owner's BYPASSRLS allows without DATABASE_URL itself having to be a superuser. Verification
needs only the public key.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from engine.doors.cli.common import CommandError, Sub, _admin_engine, _guarded

if TYPE_CHECKING:
    from store.audit_anchor import FileAnchor

__all__ = ["register"]


def _chain_errors(fn: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Key and chain errors become CommandError, so `_guarded` prints them as one line."""

    def run(args: argparse.Namespace) -> int:
        from store.audit_chain import AuditChainError
        from store.signing import SigningKeyError

        try:
            return fn(args)
        except (AuditChainError, SigningKeyError) as exc:
            raise CommandError(str(exc)) from None
        except OSError as exc:  # the anchor file: unreadable, a directory that cannot be created
            raise CommandError(f"the anchor {exc.filename}: {exc.strerror}") from None

    return _guarded(run)


def _scope(args: argparse.Namespace) -> str:
    if args.operator:
        return "the operator chain"
    return f"tenant {args.tenant}" if args.tenant else "every chain"


def _anchor(args: argparse.Namespace) -> FileAnchor:
    """--anchor, else PRANEYA_AUDIT_ANCHOR, else .local/audit-anchor/<database name>.jsonl."""
    from sqlalchemy.engine import make_url

    from store.audit_anchor import FileAnchor, anchor_path
    from store.config import admin_database_url

    if args.anchor:
        return FileAnchor(Path(args.anchor))
    return FileAnchor(anchor_path(make_url(admin_database_url()).database or ""))


def _public_key(path: str | None) -> bytes:
    """The raw Ed25519 public key: from --public-key (PEM, as GetSigningKey publishes it), else
    derived from the signing key in PRANEYA_SIGNING_KEY_FILE when that is all there is."""
    import os

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    from store.signing import SIGNING_KEY_ENV, signer_from_env

    if path is None:
        if os.environ.get(SIGNING_KEY_ENV):
            return signer_from_env().public_raw
        from engine.ops.dev import DEV

        dev_key = DEV / "signing.pem"
        there = "it exists" if dev_key.exists() else "`praneya dev keys` creates it"
        raise CommandError(
            f"no key to verify with: pass --public-key PEM (the public key GetSigningKey publishes) or set"
            f" {SIGNING_KEY_ENV} to the signing key; the development signing key is {dev_key} ({there})"
        )
    try:
        key = serialization.load_pem_public_key(Path(path).read_bytes())
    except OSError as exc:
        raise CommandError(f"--public-key: cannot read {path}: {exc.strerror}") from None
    except ValueError:
        raise CommandError(f"--public-key: {path} is not a PEM public key") from None
    if not isinstance(key, Ed25519PublicKey):
        raise CommandError(f"--public-key: {path} must hold an Ed25519 public key")
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def _seal(args: argparse.Namespace) -> int:
    from sqlalchemy import text

    from store.audit_anchor import chain_label
    from store.audit_chain import seal
    from store.signing import signer_from_env

    if args.lag_seconds < 0:
        raise CommandError("--lag-seconds cannot be negative")
    signer = signer_from_env()  # before connecting: a missing key is the likelier mistake
    anchor = _anchor(args)
    anchored = anchor.heads(signer.public_raw)
    for problem in anchored.problems:
        print(f"praneya: warning: anchor {anchor.location}: {problem} (ignored)", file=sys.stderr)
    with _admin_engine() as engine, engine.connect() as conn:
        tx = conn.begin()
        # READ COMMITTED (the default): after waiting for a concurrent sealer's lock, the next
        # statement sees its seal and continues the chain from it.
        conn.execute(text("SET LOCAL ROLE praneya_owner"))
        run = seal(
            conn,
            signer,
            anchored=anchored,
            lag=timedelta(seconds=args.lag_seconds),
            tenant_id=args.tenant,
            operator=args.operator,
        )
        # Held from before the commit until the heads are appended: a verifier never sees a
        # committed seal the anchor does not hold yet. An anchor that cannot be opened for writing
        # fails here, before the commit, and nothing is sealed.
        with anchor.holding(exclusive=True):
            tx.commit()
            try:
                records = anchor.append(run.to_anchor, signer)
            except OSError as exc:
                raise CommandError(
                    f"sealed, but could not append to the anchor {anchor.location}: {exc.strerror};"
                    " the next `praneya audit seal` anchors these seals"
                ) from None
    for r in run.sealed:
        print(r.line())
    for rec in records:
        print(f"{chain_label(rec.head.tenant_id)}: seal {rec.head.seq} anchored as record {rec.n} of {anchor.location}")
    if not run.sealed and not run.refused:
        print(f"{_scope(args)}: nothing to seal (no rows older than {args.lag_seconds:g} s since the last seal)")
    for refusal in run.refused:
        print(f"praneya: {refusal.line()}", file=sys.stderr)
    if run.refused:
        print(
            f"praneya: refused {len(run.refused)} chains: they do not extend the heads anchored in"
            f" {anchor.location} (seals deleted or replaced, rows edited). If the database was deliberately"
            " restored from an older backup, keep that anchor as the record of what was lost and start a new"
            " one (README, Tamper evidence)",
            file=sys.stderr,
        )
        return 1
    return 0


def _verify(args: argparse.Namespace) -> int:
    from sqlalchemy import text

    from store.audit_chain import verify

    public_key = _public_key(args.public_key)
    anchor = _anchor(args)
    with _admin_engine() as engine:
        # One snapshot for seals and rows; read only, so it never blocks or changes anything.
        # SET statements take no snapshot: verify()'s first query does, inside the anchor's lock.
        with engine.connect().execution_options(isolation_level="REPEATABLE READ") as conn, conn.begin():
            conn.execute(text("SET TRANSACTION READ ONLY"))
            conn.execute(text("SET LOCAL ROLE praneya_owner"))
            report = verify(conn, public_key, anchor, tenant_id=args.tenant, operator=args.operator)
    for line in report.anchor_lines():
        print(line)
    for chain in report.chains:
        print(chain.line())
    if not report.chains:
        print(f"{_scope(args)}: no audit rows or seals to verify")
    if not report.ok:
        broken = sum(1 for c in report.chains if not c.ok)
        what = f"audit chain broken or not anchored for {broken} of {len(report.chains)} chains"
        if not report.anchor.ok:
            what += f"; the anchor has {len(report.anchor.problems)} invalid records"
        print(f"praneya: {what}", file=sys.stderr)
        return 1
    return 0


def _add_scope(p: argparse.ArgumentParser) -> None:
    scope = p.add_mutually_exclusive_group()
    scope.add_argument("--tenant", help="only this tenant's chain (default: every chain)")
    scope.add_argument("--operator", action="store_true", help="only the operator chain (audit rows without a tenant)")
    p.add_argument(
        "--anchor",
        metavar="FILE",
        help="the anchor file (default: PRANEYA_AUDIT_ANCHOR, else .local/audit-anchor/<database>.jsonl)",
    )


def register(sub: Sub) -> None:
    audit = sub.add_parser("audit", help="tamper-evident audit log: seal and verify").add_subparsers(
        dest="a_cmd", required=True, metavar="ACTION"
    )
    p = audit.add_parser(
        "seal",
        help="append a signed seal over each chain's new audit rows and anchor the heads outside the database"
        " (key: PRANEYA_SIGNING_KEY_FILE)",
    )
    _add_scope(p)
    p.add_argument(
        "--lag-seconds",
        type=float,
        default=120.0,
        help="only seal rows at least this old, so no transaction in flight can still add one (default 120)",
    )
    p.set_defaults(handler=_chain_errors(_seal))
    p = audit.add_parser(
        "verify", help="check rows, seals and the anchor; print each chain's first broken link; exit 1 if any"
    )
    _add_scope(p)
    p.add_argument(
        "--public-key",
        help="PEM Ed25519 public key to verify with (default: derived from PRANEYA_SIGNING_KEY_FILE)",
    )
    p.set_defaults(handler=_chain_errors(_verify))
