"""Request ids: one per call, returned in the `x-request-id` response header and named in every log
line and audit row the call leaves, so a caller and an operator can talk about the same call.

A caller may send its own `x-request-id` (to tie our logs to theirs); it is kept only when it is a
sane token — at most 64 of [A-Za-z0-9._-] — and replaced by a fresh id otherwise: a header value ends
up in logs and audit rows, so newlines, kilobytes or anything else a client invents never do.
"""

from __future__ import annotations

import contextvars
import re
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import grpc

__all__ = ["REQUEST_ID_HEADER", "RequestIdInterceptor", "current_request_id", "request_id_from"]

REQUEST_ID_HEADER = "x-request-id"
_SANE = re.compile(r"[A-Za-z0-9._-]{1,64}")

current_request_id: contextvars.ContextVar[str] = contextvars.ContextVar("praneya_request_id")


def request_id_from(metadata: Sequence[tuple[str, str | bytes]] | None) -> str:
    """The caller's id when it sent a sane one, else a new one."""
    for key, value in metadata or ():
        if key == REQUEST_ID_HEADER:
            if isinstance(value, str) and _SANE.fullmatch(value):
                return value
            break
    return uuid.uuid4().hex


class RequestIdInterceptor(grpc.ServerInterceptor):  # type: ignore[misc]
    """Outermost interceptor: picks the call's id, sends it as initial metadata before anything else
    runs (so it comes back with every status, the authentication interceptor's rejections included),
    and exposes it in `current_request_id` to whatever handles or logs the call."""

    def intercept_service(self, continuation: Callable[[Any], Any], details: Any) -> Any:
        request_id = request_id_from(details.invocation_metadata)
        # Interceptors further in (authentication) log rejections while choosing the handler.
        token = current_request_id.set(request_id)
        try:
            handler = continuation(details)
        finally:
            current_request_id.reset(token)
        if handler is None or handler.unary_unary is None:
            return handler  # streaming calls (reflection, health Watch) go through untouched
        inner = handler.unary_unary

        # The handler may run on another thread than this interceptor: set the id around it.
        def with_request_id(request: Any, context: grpc.ServicerContext) -> Any:
            context.send_initial_metadata(((REQUEST_ID_HEADER, request_id),))
            token_ = current_request_id.set(request_id)
            try:
                return inner(request, context)
            finally:
                current_request_id.reset(token_)

        return grpc.unary_unary_rpc_method_handler(
            with_request_id,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
