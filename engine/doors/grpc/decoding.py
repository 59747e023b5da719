"""Request bytes that are not a valid message are the caller's mistake: INVALID_ARGUMENT, never INTERNAL.

gRPC Python deserialises a request before any handler runs; when the deserializer raises, the server
answers INTERNAL "Exception deserializing request!", a status the README does not document and one
that reads as our fault. This interceptor, the innermost, gives every unary-request handler a
deserializer that turns a parse failure into a sentinel, and a behaviour that answers the sentinel
with INVALID_ARGUMENT naming the method; the servicer's methods never see the sentinel. A service may
hand in its own refusal (ClinicalSafety's goes through its `_call`, so the refusal is logged, counted
and, like any failure, answered UNAUTHENTICATED to a caller the database does not know). It is an
interceptor rather than a change to the generated registration so that it covers every service on
the server (ClinicalSafety, the benchmark floor, health) without touching generated code, and,
standing inside the authentication interceptor, it never parses the bytes of a caller without a
valid token.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

import grpc

__all__ = ["RequestDecodingInterceptor"]

log = logging.getLogger("praneya.api")


class _Undecodable:
    """What the guarded deserializer returns for bytes it cannot parse (None means failure to gRPC)."""

    __slots__ = ()


_UNDECODABLE = _Undecodable()


def _guarded(deserializer: Callable[[bytes], Any]) -> Callable[[bytes], Any]:
    def decode(data: bytes) -> Any:
        try:
            return deserializer(data)
        except Exception:  # noqa: BLE001 - whatever the parser raises on these bytes, the call is refused
            return _UNDECODABLE

    return decode


Refusal = Callable[[str, grpc.ServicerContext], None]


def _abort(rpc: str, context: grpc.ServicerContext) -> None:
    log.warning("undecodable request", extra={"rpc": rpc, "code": "INVALID_ARGUMENT"})
    context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"the request is not a valid {rpc} request message")


class RequestDecodingInterceptor(grpc.ServerInterceptor):  # type: ignore[misc]
    """Malformed request bytes -> INVALID_ARGUMENT. Install it last (innermost).

    `refusals` maps a service's full name to how it refuses (it must abort the call); other services
    get a plain INVALID_ARGUMENT."""

    def __init__(self, refusals: Mapping[str, Refusal] | None = None) -> None:
        self.refusals = dict(refusals or {})

    def intercept_service(self, continuation: Callable[[Any], Any], details: Any) -> Any:
        handler = continuation(details)
        if handler is None or handler.request_streaming or handler.request_deserializer is None:
            return handler  # streamed requests (reflection) keep gRPC's own handling
        method: str = details.method
        service, _, rpc = method.lstrip("/").rpartition("/")
        refusal = self.refusals.get(service, _abort)

        def refuse(context: grpc.ServicerContext) -> None:
            refusal(rpc, context)
            raise AssertionError("a refusal must abort the call")  # pragma: no cover

        if handler.unary_unary is not None:
            unary = handler.unary_unary

            def unary_unary(request: Any, context: grpc.ServicerContext) -> Any:
                if request is _UNDECODABLE:
                    refuse(context)
                return unary(request, context)

            return grpc.unary_unary_rpc_method_handler(
                unary_unary,
                request_deserializer=_guarded(handler.request_deserializer),
                response_serializer=handler.response_serializer,
            )
        streaming = handler.unary_stream

        def unary_stream(request: Any, context: grpc.ServicerContext) -> Any:
            if request is _UNDECODABLE:
                refuse(context)
            return streaming(request, context)

        return grpc.unary_stream_rpc_method_handler(
            unary_stream,
            request_deserializer=_guarded(handler.request_deserializer),
            response_serializer=handler.response_serializer,
        )
