"""The gRPC door's authentication: the bearer token verified before any handler runs
(engine/app/tokens.py), the principal handed to the handler in a ContextVar."""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import grpc

from engine.app.clients import ClientAuthUnavailable
from engine.app.tokens import AuthError
from store.session import Principal

__all__ = ["AuthInterceptor", "current_principal"]

class Verifier(Protocol):
    """Users' tokens (TokenVerifier) or users' and registered clients' (engine.app.clients.CallerVerifier)."""

    def verify(self, token: str) -> Principal: ...


current_principal: contextvars.ContextVar[Principal] = contextvars.ContextVar("praneya_principal")

# Standard services that generic tools call without a token.
_OPEN_PREFIXES = (
    "/grpc.health.v1.Health/",
    "/grpc.reflection.v1alpha.ServerReflection/",
    "/grpc.reflection.v1.ServerReflection/",
)

def _bearer(metadata: Sequence[tuple[str, str | bytes]] | None) -> str | None:
    for key, value in metadata or ():
        if key == "authorization":
            text = value.decode() if isinstance(value, bytes) else value
            scheme, _, token = text.partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
            return None
    return None


def _abort_handler(code: grpc.StatusCode, details: str) -> grpc.RpcMethodHandler:
    def reject(request: Any, context: grpc.ServicerContext) -> Any:
        context.abort(code, details)

    return grpc.unary_unary_rpc_method_handler(reject)


class AuthInterceptor(grpc.ServerInterceptor):  # type: ignore[misc]
    """Verifies the bearer token before any handler runs, and hands the principal to it."""

    def __init__(self, verifier: Verifier, on_reject: Callable[[str, str], None] | None = None) -> None:
        self.verifier = verifier
        self.on_reject = on_reject

    def intercept_service(self, continuation: Callable[[Any], Any], details: Any) -> Any:
        method: str = details.method
        if method.startswith(_OPEN_PREFIXES):
            return continuation(details)
        token = _bearer(details.invocation_metadata)
        if token is None:
            if self.on_reject:
                self.on_reject(method, "missing bearer token")
            return _abort_handler(
                grpc.StatusCode.UNAUTHENTICATED, "authorization: Bearer <token> is required"
            )
        try:
            principal = self.verifier.verify(token)
        except AuthError as exc:
            if self.on_reject:
                self.on_reject(method, str(exc))
            return _abort_handler(grpc.StatusCode.UNAUTHENTICATED, str(exc))
        except ClientAuthUnavailable as exc:
            # The client registry could not be read: the token was not checked, so nothing is served.
            if self.on_reject:
                self.on_reject(method, str(exc))
            return _abort_handler(grpc.StatusCode.UNAVAILABLE, str(exc) or "client authentication is unavailable")
        handler = continuation(details)
        if handler is None or handler.unary_unary is None:
            return handler
        inner = handler.unary_unary

        # The handler may run on another thread than this interceptor: set the identity around it.
        def with_principal(request: Any, context: grpc.ServicerContext) -> Any:
            token_ = current_principal.set(principal)
            try:
                return inner(request, context)
            finally:
                current_principal.reset(token_)

        return grpc.unary_unary_rpc_method_handler(
            with_principal,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )


