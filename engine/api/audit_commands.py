"""`praneya audit seal | verify`: the tamper-evident audit log (store/audit_chain.py).

Both run on the admin connection (DATABASE_URL) as praneya_owner: sealing inserts into
audit.audit_seals, which only the owner writes, and verification reads every tenant's rows, which
the owner's BYPASSRLS allows without DATABASE_URL itself having to be a superuser.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from engine.api.commands import CommandError, Sub, _admin_engine, _guarded

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

    return _guarded(run)


def _scope(args: argparse.Namespace) -> str:
    if args.operator:
        return "the operator chain"
    return f"tenant {args.tenant}" if args.tenant else "every chain"


def _public_key(path: str | None) -> bytes:
    """The raw Ed25519 public key: from --public-key (PEM, as GetSigningKey publishes it), else
    derived from the signing key in PRANEYA_SIGNING_KEY_FILE."""
    from store.signing import signer_from_env

    if path is None:
        return signer_from_env().public_raw
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

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

    from store.audit_chain import seal
    from store.signing import signer_from_env

    if args.lag_seconds < 0:
        raise CommandError("--lag-seconds cannot be negative")
    signer = signer_from_env()  # before connecting: a missing key is the likelier mistake
    with _admin_engine() as engine, engine.begin() as conn:
        # READ COMMITTED (the default): after waiting for a concurrent sealer's lock, the next
        # statement sees its seal and continues the chain from it.
        conn.execute(text("SET LOCAL ROLE praneya_owner"))
        results = seal(
            conn, signer, lag=timedelta(seconds=args.lag_seconds), tenant_id=args.tenant, operator=args.operator
        )
    for r in results:
        print(r.line())
    if not results:
        print(f"{_scope(args)}: nothing to seal (no rows older than {args.lag_seconds:g} s since the last seal)")
    return 0


def _verify(args: argparse.Namespace) -> int:
    from sqlalchemy import text

    from store.audit_chain import verify

    public_key = _public_key(args.public_key)
    with _admin_engine() as engine:
        # One snapshot for seals and rows; read only, so it never blocks or changes anything.
        with engine.connect().execution_options(isolation_level="REPEATABLE READ") as conn, conn.begin():
            conn.execute(text("SET TRANSACTION READ ONLY"))
            conn.execute(text("SET LOCAL ROLE praneya_owner"))
            report = verify(conn, public_key, tenant_id=args.tenant, operator=args.operator)
    for chain in report.chains:
        print(chain.line())
    if not report.chains:
        print(f"{_scope(args)}: no audit rows or seals to verify")
    if not report.ok:
        broken = sum(1 for c in report.chains if not c.ok)
        print(f"praneya: audit chain broken for {broken} of {len(report.chains)} chains", file=sys.stderr)
        return 1
    return 0


def _add_scope(p: argparse.ArgumentParser) -> None:
    scope = p.add_mutually_exclusive_group()
    scope.add_argument("--tenant", help="only this tenant's chain (default: every chain)")
    scope.add_argument("--operator", action="store_true", help="only the operator chain (audit rows without a tenant)")


def register(sub: Sub) -> None:
    audit = sub.add_parser("audit", help="tamper-evident audit log: seal and verify").add_subparsers(
        dest="a_cmd", required=True, metavar="ACTION"
    )
    p = audit.add_parser(
        "seal", help="append a signed seal over each chain's new audit rows (key: PRANEYA_SIGNING_KEY_FILE)"
    )
    _add_scope(p)
    p.add_argument(
        "--lag-seconds",
        type=float,
        default=120.0,
        help="only seal rows at least this old, so no transaction in flight can still add one (default 120)",
    )
    p.set_defaults(handler=_chain_errors(_seal))
    p = audit.add_parser("verify", help="check rows and seals; print each chain's first broken link; exit 1 if any")
    _add_scope(p)
    p.add_argument(
        "--public-key",
        help="PEM Ed25519 public key to verify with (default: that of PRANEYA_SIGNING_KEY_FILE)",
    )
    p.set_defaults(handler=_chain_errors(_verify))
