"""`praneya clients ...`: the registry of clients (an EHR or a backend), for operators.

Run on the admin connection (DATABASE_URL): a registration is a platform operation above any
tenant's row-level security. Each change leaves an audit row (CLIENT_REGISTERED,
CLIENT_KEYS_ROTATED, CLIENT_DEACTIVATED) in the client's tenant.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from engine.doors.cli.common import CommandError, Sub, _admin_engine, _guarded

__all__ = ["register"]


def _jwks_file(path: str | None) -> dict[str, Any] | None:
    if path is None:
        return None
    try:
        doc = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise CommandError(f"--jwks: {path} is not a readable JSON file ({type(exc).__name__})") from None
    if not isinstance(doc, dict):
        raise CommandError(f"--jwks: {path} is not a JWK Set (a JSON object with 'keys')")
    return doc


def _register(args: argparse.Namespace) -> int:
    from store.clients import ALGORITHMS, ClientError, register_client

    try:
        with _admin_engine() as engine, engine.begin() as conn:
            created = register_client(
                conn,
                client_id=args.id,
                tenant_id=args.tenant,
                display_name=args.name,
                issuer=args.issuer,
                scopes=args.scope,
                algorithms=args.alg or ALGORITHMS,
                jwks=_jwks_file(args.jwks),
                jwks_url=args.jwks_url,
                fhir_server_hosts=args.fhir_host,
                cors_origins=args.cors_origin,
                allow_http_jwks_url=args.allow_http_jwks_url,
            )
    except ClientError as exc:
        raise CommandError(str(exc)) from None
    if not created:
        raise CommandError(f"--id: a client {args.id!r} already exists (rotate-keys changes its keys)")
    print(f"client {args.id} registered for tenant {args.tenant}: scopes {' '.join(sorted(set(args.scope)))}")
    return 0


def _when(value: Any) -> str:
    return value.isoformat(timespec="seconds") if value is not None else "-"


def _list(args: argparse.Namespace) -> int:
    from store.clients import list_clients

    with _admin_engine() as engine, engine.connect() as conn:
        rows = list_clients(conn, args.tenant)
    if args.json:
        print(json.dumps([
            {"id": r.id, "tenant": r.tenant_id, "name": r.display_name, "issuer": r.issuer, "jwks_url": r.jwks_url,
             "key_ids": list(r.key_ids), "algorithms": list(r.algorithms), "scopes": list(r.scopes),
             "fhir_server_hosts": list(r.fhir_server_hosts), "cors_origins": list(r.cors_origins),
             "active": r.is_active, "created_at": _when(r.created_at), "rotated_at": _when(r.rotated_at),
             "deactivated_at": _when(r.deactivated_at)} for r in rows], indent=2))
        return 0
    print(f"{'CLIENT':24} {'TENANT':20} {'ACTIVE':6} {'SCOPES':50} {'KEYS':18} ISSUER")
    for r in rows:
        keys = ",".join(r.key_ids) + (" +url" if r.jwks_url else "")
        print(f"{r.id:24} {r.tenant_id:20} {'yes' if r.is_active else 'no':6} {' '.join(r.scopes):50}"
              f" {keys[:18]:18} {r.issuer}")
    print(f"{len(rows)} client(s)")
    return 0


def _deactivate(args: argparse.Namespace) -> int:
    from store.clients import deactivate_client

    with _admin_engine() as engine, engine.begin() as conn:
        if not deactivate_client(conn, args.id):
            raise CommandError(f"--id: no active client {args.id!r}")
    print(f"client {args.id} deactivated: its next token and its next statement are refused")
    return 0


def _rotate(args: argparse.Namespace) -> int:
    from store.clients import ClientError, rotate_client_keys

    try:
        with _admin_engine() as engine, engine.begin() as conn:
            kids = rotate_client_keys(conn, args.id, jwks=_jwks_file(args.jwks), jwks_url=args.jwks_url,
                                      allow_http_jwks_url=args.allow_http_jwks_url)
    except ClientError as exc:
        raise CommandError(str(exc)) from None
    where = ", ".join([*(f"kid {k}" for k in kids), *(["the JWKS URL"] if args.jwks_url else [])])
    print(f"client {args.id}: keys replaced ({where}); processes pick them up within seconds")
    return 0


def _keys_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--jwks", metavar="FILE", help="the client's public keys as a JWK Set (JSON file)")
    p.add_argument("--jwks-url", metavar="URL", help="where the client publishes its JWK Set (https)")
    p.add_argument("--allow-http-jwks-url", action="store_true",
                   help="accept an http JWKS URL (development only; the service fetches https only unless"
                        " it runs in development)")


def register(sub: Sub) -> None:
    clients = sub.add_parser("clients", help="registered clients (an EHR or backend): issuer, keys, scopes")
    actions = clients.add_subparsers(dest="clients_cmd", required=True, metavar="ACTION")
    p = actions.add_parser("register", help="register a client of a tenant with its issuer, keys and scopes")
    p.add_argument("--id", required=True, help="client id (letters, digits, _.:@-)")
    p.add_argument("--tenant", required=True, help="the one tenant the client belongs to")
    p.add_argument("--name", required=True, help="display name, e.g. 'Riverside EHR'")
    p.add_argument("--issuer", required=True, help="the iss of the client's tokens (unique among active clients)")
    p.add_argument("--scope", action="append", required=True,
                   choices=["evaluate.supplied", "evaluate.stored", "records.write"],
                   help="a scope granted (repeatable): evaluate.supplied (supplied FHIR data), evaluate.stored"
                        " (a stored patient record), records.write (write records)")
    p.add_argument("--alg", action="append", choices=["ES384", "RS384", "EdDSA"],
                   help="an algorithm the client signs with (repeatable; default all three)")
    _keys_arguments(p)
    p.add_argument("--fhir-host", action="append", default=[],
                   help="a FHIR server host the service may fetch from for this client (repeatable; host[:port])")
    p.add_argument("--cors-origin", action="append", default=[],
                   help="a browser origin allowed to call (repeatable; scheme://host[:port], never *)")
    p.set_defaults(handler=_guarded(_register))
    p = actions.add_parser("list", help="the registered clients, active or not")
    p.add_argument("--tenant", help="only this tenant's clients")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(handler=_guarded(_list))
    p = actions.add_parser("deactivate", help="refuse a client from now on (its tokens and its transactions)")
    p.add_argument("--id", required=True, help="the client to deactivate")
    p.set_defaults(handler=_guarded(_deactivate))
    p = actions.add_parser("rotate-keys", help="replace a client's keys (give old and new together to overlap)")
    p.add_argument("--id", required=True, help="the client whose keys change")
    _keys_arguments(p)
    p.set_defaults(handler=_guarded(_rotate))
