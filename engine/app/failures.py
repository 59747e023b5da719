"""Failures as the use cases report them, free of transport: a code (the gRPC status names, which
every door maps to its own: gRPC statuses, HTTP statuses with an OperationOutcome, CLI exit codes) and
a message that names places, never values (no PHI in any door's errors).
"""

from __future__ import annotations

import enum

import psycopg
from psycopg import errors as pg_errors
from psycopg_pool import PoolTimeout
from sqlalchemy import exc as sa_exc

from store import patients, service_repo
from store.admin import AdminError
from store.crypto import DecryptionError, KeyProviderError
from store.session import PrincipalMismatch

__all__ = ["Code", "Failure", "classify", "invalid"]


class Code(enum.Enum):
    """The documented outcomes of a call (the names of the gRPC status codes they map to)."""

    INVALID_ARGUMENT = "INVALID_ARGUMENT"
    NOT_FOUND = "NOT_FOUND"
    ALREADY_EXISTS = "ALREADY_EXISTS"
    PERMISSION_DENIED = "PERMISSION_DENIED"
    UNAUTHENTICATED = "UNAUTHENTICATED"
    FAILED_PRECONDITION = "FAILED_PRECONDITION"
    RESOURCE_EXHAUSTED = "RESOURCE_EXHAUSTED"
    DEADLINE_EXCEEDED = "DEADLINE_EXCEEDED"
    UNAVAILABLE = "UNAVAILABLE"
    DATA_LOSS = "DATA_LOSS"
    INTERNAL = "INTERNAL"


class Failure(Exception):
    """A call's documented failure: `code` and a message safe to show the caller."""

    def __init__(self, code: Code, message: str, problems: tuple[tuple[str, str], ...] = ()) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        # (element path, problem) for input that failed validation in several places (FHIR): a door
        # that can say them all (an OperationOutcome) does.
        self.problems = problems


def invalid(field: str, problem: str) -> Failure:
    return Failure(Code.INVALID_ARGUMENT, f"{field}: {problem}")


def classify(exc: BaseException) -> Failure:
    """Known failures to documented status codes; messages name places, never values."""
    if isinstance(exc, Failure):
        return exc
    if isinstance(exc, patients.PatientNotFound):
        return Failure(Code.NOT_FOUND, str(exc) or "not found")
    if isinstance(exc, PrincipalMismatch):
        return Failure(Code.UNAUTHENTICATED, str(exc))
    if isinstance(exc, patients.TooManyItems):
        return Failure(Code.FAILED_PRECONDITION, str(exc))
    if isinstance(exc, patients.ExternalIdTaken):
        return Failure(Code.ALREADY_EXISTS, str(exc))
    if isinstance(exc, patients.SameRecordTwice):
        return Failure(Code.INVALID_ARGUMENT, str(exc))
    if isinstance(exc, patients.IntegrityError):
        return Failure(
            Code.DATA_LOSS,
            "the patient's record failed its integrity check; refusing to evaluate it",
        )
    if isinstance(exc, DecryptionError):
        return Failure(
            Code.DATA_LOSS,
            f"a stored value could not be decrypted ({exc.table}.{exc.column}, row {exc.row_id}); refusing to evaluate",
        )
    if isinstance(exc, KeyProviderError):
        return Failure(Code.FAILED_PRECONDITION, "the tenant's data keys are not available")
    if isinstance(exc, service_repo.GrantAlreadyEnded):
        return Failure(Code.FAILED_PRECONDITION, str(exc))
    if isinstance(exc, AdminError):
        return Failure(Code.INVALID_ARGUMENT, str(exc))
    if isinstance(exc, LookupError):
        return Failure(Code.NOT_FOUND, str(exc) or "not found")
    if isinstance(exc, (sa_exc.TimeoutError, PoolTimeout)):  # pool exhausted
        return Failure(Code.UNAVAILABLE, "the service is at capacity; retry with backoff")
    # The driver's error, through SQLAlchemy (wrapped) or from the evaluation path's psycopg pool
    # (store/lean.py, bare): the same outcome either way.
    orig: BaseException | None = (
        exc.orig if isinstance(exc, sa_exc.DBAPIError) else exc if isinstance(exc, psycopg.Error) else None
    )
    if orig is not None:
        if isinstance(orig, pg_errors.QueryCanceled):
            return Failure(Code.DEADLINE_EXCEEDED, "the database did not answer in time")
        if isinstance(orig, pg_errors.InsufficientPrivilege):
            return Failure(Code.PERMISSION_DENIED, "not permitted for this principal")
        if isinstance(orig, pg_errors.NoDataFound):
            return Failure(Code.NOT_FOUND, "patient not found")
        if isinstance(orig, pg_errors.InvalidParameterValue):
            diag = getattr(orig, "diag", None)
            return Failure(Code.INVALID_ARGUMENT, getattr(diag, "message_primary", None) or "invalid")
        if isinstance(orig, pg_errors.ForeignKeyViolation):
            return Failure(Code.FAILED_PRECONDITION, "a referenced record does not exist in this tenant")
        if isinstance(orig, pg_errors.UniqueViolation):
            diag = getattr(orig, "diag", None)
            return Failure(
                Code.ALREADY_EXISTS,
                f"already recorded ({getattr(diag, 'constraint_name', None) or 'a unique key'})",
            )
        if isinstance(orig, (pg_errors.CheckViolation, pg_errors.NotNullViolation)):
            diag = getattr(orig, "diag", None)
            return Failure(
                Code.FAILED_PRECONDITION,
                f"rejected by constraint {getattr(diag, 'constraint_name', None) or 'of the database'}",
            )
        if isinstance(exc, (sa_exc.OperationalError, sa_exc.InterfaceError)) or isinstance(
            orig, (psycopg.OperationalError, psycopg.InterfaceError, pg_errors.AdminShutdown)
        ):
            return Failure(Code.UNAVAILABLE, "the database is unavailable; retry with backoff")
    return Failure(Code.INTERNAL, "internal error")
