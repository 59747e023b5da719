"""`praneya backup create | verify | restore`: encrypted pg_dump backups (store/backup.py)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from engine.doors.cli.common import CommandError, Sub, _guarded

__all__ = ["register"]

_MIB = 1024 * 1024


_progress_open = False


def _show_progress(phase: str, done: int) -> None:
    # One line rewritten in place on stderr, so stdout stays the one-line result scripts may read.
    global _progress_open
    print(f"\r{phase}: {done / _MIB:,.1f} MiB", end="", file=sys.stderr, flush=True)
    _progress_open = True


def _end_progress() -> None:
    global _progress_open
    if _progress_open:
        print(file=sys.stderr)
        _progress_open = False


def _backup_errors(fn: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """store.backup's errors become CommandError, so `_guarded` prints them as one line."""

    def run(args: argparse.Namespace) -> int:
        from store.backup import BackupError

        try:
            return fn(args)
        except BackupError as exc:
            _end_progress()
            raise CommandError(str(exc)) from None

    return _guarded(run)


def _default_out() -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return Path(".local") / "backups" / f"praneya-{stamp}.pbak"


def _create(args: argparse.Namespace) -> int:
    from store.backup import create_backup
    from store.config import admin_database_url
    from store.crypto import key_provider_from_env

    provider = key_provider_from_env()
    out = Path(args.out) if args.out else _default_out()
    summary = create_backup(admin_database_url(), out, provider, progress=_show_progress)
    _end_progress()
    print(
        f"backup {summary.header.backup_id} of database {summary.header.database} written to {out}"
        f" ({summary.file_bytes:,} bytes, {summary.chunks} chunks, master key {summary.header.master_key_id})"
    )
    return 0


def _verify(args: argparse.Namespace) -> int:
    from store.backup import verify_backup
    from store.crypto import key_provider_from_env

    summary = verify_backup(Path(args.file), key_provider_from_env(), progress=_show_progress)
    _end_progress()
    print(
        f"{args.file}: backup {summary.header.backup_id} of {summary.header.database}"
        f" made {summary.header.created_at} is intact ({summary.chunks} chunks, sha256 {summary.sha256})"
    )
    return 0


def _restore(args: argparse.Namespace) -> int:
    from store.backup import restore_backup
    from store.crypto import key_provider_from_env

    if not args.target_url:
        # Never default to DATABASE_URL: a restore aimed at the wrong database is the costly mistake.
        raise CommandError(
            "restore needs --target-url naming a new, empty database; it never restores into DATABASE_URL by default"
        )
    summary = restore_backup(Path(args.file), args.target_url, key_provider_from_env(), progress=_show_progress)
    _end_progress()
    print(
        f"restored backup {summary.header.backup_id} of {summary.header.database}"
        f" (made {summary.header.created_at}) into the target database"
    )
    return 0


def register(sub: Sub) -> None:
    backup = sub.add_parser("backup", help="encrypted backups of the whole database").add_subparsers(
        dest="backup_command", required=True, metavar="ACTION"
    )
    p = backup.add_parser("create", help="pg_dump of DATABASE_URL, encrypted with a key from the key provider")
    p.add_argument("--out", help="backup file (default .local/backups/praneya-<UTC timestamp>.pbak)")
    p.set_defaults(handler=_backup_errors(_create))
    p = backup.add_parser("verify", help="decrypt and authenticate a backup file without restoring it")
    p.add_argument("file", help="the backup file to verify")
    p.set_defaults(handler=_backup_errors(_verify))
    p = backup.add_parser("restore", help="restore a backup into a new, empty database (--target-url)")
    p.add_argument("file", help="the backup file to restore")
    p.add_argument("--target-url", help="the database to restore into; it must exist and be empty (required)")
    p.set_defaults(handler=_backup_errors(_restore))
