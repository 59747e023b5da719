"""The CDS Hooks 2.0 door: an ASGI application served by uvicorn over HTTPS, beside the gRPC server
in every worker process, on the same use cases (engine/app).

    GET  /cds-services                 discovery (no patient data; no token needed)
    POST /cds-services/{id}            a hook call → cards
    POST /cds-services/{id}/feedback   what the clinician did with the cards

Security as CDS Hooks requires: a bearer JWT signed by a registered CDS client (issuer allow-listed
per tenant, `aud` this service's URL, short-lived, `jti` once), TLS, CORS for explicit origins only.
Everything the gRPC API promises holds here too: the evaluation's audit row is written in its
transaction, an evaluation that could not screen everything says so (a card), and no error or log
line carries patient data. Malformed input is a 400 with an OperationOutcome naming the element;
never a 500.

The use cases are synchronous (one database transaction each): they run on a thread pool, the event
loop only parses, fetches missing prefetch from the EHR's FHIR server (asynchronously, with
timeouts, https only outside development, hosts allow-listed) and writes answers.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from engine.app.clients import ClientAuthUnavailable, acting_for
from engine.app.evaluation import Evaluation, SuppliedPatient
from engine.app.failures import Code, Failure
from engine.app.feedback import Feedback
from engine.app.service import Services
from engine.app.supplied import supplied_from_fhir
from engine.app.tokens import AuthError
from engine.doors.cdshooks.cards import cards_for
from engine.doors.cdshooks.discovery import SERVICES, discovery_document
from engine.doors.cdshooks.feedback import parse_feedback
from engine.doors.cdshooks.requests import (
    HookRequest,
    HookRequestError,
    draft_order_labels,
    missing_prefetch,
    operation_outcome,
    parse_hook_request,
    prefetch_query,
)
from store.session import Principal, RequestMeta

__all__ = ["HTTP_STATUS", "CdsHooksApp", "FhirFetchError", "TokenCheck"]

log = logging.getLogger("praneya.cdshooks")

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
# token, audience → the principal (a registered client), or AuthError with a message safe to show.
TokenCheck = Callable[[str, str], Principal]

# The use cases' outcomes as HTTP statuses. FAILED_PRECONDITION: the request cannot be served as it
# stands (409); RESOURCE_EXHAUSTED: the answer or the request is too large (413).
HTTP_STATUS = {
    Code.INVALID_ARGUMENT: 400,
    Code.UNAUTHENTICATED: 401,
    Code.PERMISSION_DENIED: 403,
    Code.NOT_FOUND: 404,
    Code.ALREADY_EXISTS: 409,
    Code.FAILED_PRECONDITION: 409,
    Code.RESOURCE_EXHAUSTED: 413,
    Code.DEADLINE_EXCEEDED: 504,
    Code.UNAVAILABLE: 503,
    Code.DATA_LOSS: 500,
    Code.INTERNAL: 500,
}
_ISSUE_CODE = {
    400: "invalid",
    401: "login",
    403: "forbidden",
    404: "not-found",
    409: "conflict",
    412: "required",
    413: "too-costly",
    502: "transient",
    503: "transient",
    504: "timeout",
}
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,100}$")
_SERVICE_PATH = re.compile(r"^/cds-services/([A-Za-z0-9._-]{1,100})(/feedback)?$")


class FhirFetchError(Exception):
    """Prefetch could not be read from the EHR's FHIR server; the message names the key, not data."""


class _Answer(Exception):
    def __init__(self, status: int, body: Any, headers: Sequence[tuple[bytes, bytes]] = ()) -> None:
        self.status = status
        self.body = body
        self.headers = list(headers)


def _outcome(status: int, diagnostics: str, problems: Sequence[tuple[str, str]] = ()) -> dict[str, Any]:
    if problems:
        return operation_outcome(problems)
    return {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": _ISSUE_CODE.get(status, "exception"), "diagnostics": diagnostics}],
    }


class CdsHooksApp:
    def __init__(
        self,
        services: Services,
        check_token: TokenCheck,
        *,
        base_url: str,
        executor: ThreadPoolExecutor,
        cors_origins: Callable[[], Iterable[str]] = tuple,
        allow_http_fhir: bool = False,
        fhir_hosts: Callable[[Principal], Sequence[str]] = lambda p: (),
        max_body_bytes: int = 1 << 20,
        max_response_bytes: int = 4 << 20,
        statement_timeout_ms: int = 5000,
        fetch_timeout_s: float = 5.0,
    ) -> None:
        self.services = services
        self.check_token = check_token
        self.base_url = base_url.rstrip("/")
        self.executor = executor
        self.cors_origins = cors_origins  # read per request: registered clients come and go
        self.allow_http_fhir = allow_http_fhir
        self.fhir_hosts = fhir_hosts
        self.max_body_bytes = max_body_bytes
        self.max_response_bytes = max_response_bytes
        self.statement_timeout_ms = statement_timeout_ms
        self.fetch_timeout_s = fetch_timeout_s
        self._discovery = json.dumps(discovery_document(), separators=(",", ":")).encode()
        self._http: Any = None  # httpx.AsyncClient, made on first use in the server's event loop

    # -- ASGI ------------------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        rid = headers.get("x-request-id", "")
        request_id = rid if _REQUEST_ID.match(rid) else uuid.uuid4().hex
        extra = [(b"x-request-id", request_id.encode())]
        origin = headers.get("origin")
        if origin is not None:
            if origin.rstrip("/") not in {o.rstrip("/") for o in self.cors_origins()}:
                # Not an allowed origin: no CORS headers at all, so a browser withholds the answer;
                # a preflight is refused outright.
                if scope["method"] == "OPTIONS":
                    await self._send(send, 403, _outcome(403, "this origin is not allowed"), extra)
                    return
            else:
                extra += [(b"access-control-allow-origin", origin.encode()), (b"vary", b"Origin")]
        try:
            status, body, more = await self._route(scope, receive, headers, request_id)
        except _Answer as answer:
            status, body, more = answer.status, answer.body, answer.headers
        except Exception as exc:  # noqa: BLE001 - the last line of defence: a 500 without details
            log.error("http internal error", extra={"request_id": request_id, "error_type": type(exc).__name__})
            status, body, more = 500, _outcome(500, "internal error"), []
        await self._send(send, status, body, extra + more)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self._http is not None:
                    await self._http.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _send(self, send: Send, status: int, body: Any, headers: list[tuple[bytes, bytes]]) -> None:
        payload = body if isinstance(body, bytes) else json.dumps(body, separators=(",", ":")).encode()
        ctype = b"application/fhir+json" if isinstance(body, dict) and body.get("resourceType") else b"application/json"
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", ctype),
                    (b"content-length", str(len(payload)).encode()),
                    (b"cache-control", b"no-store"),
                    (b"x-content-type-options", b"nosniff"),
                    (b"strict-transport-security", b"max-age=31536000"),
                    *headers,
                ],
            }
        )
        await send({"type": "http.response.body", "body": payload})

    # -- routing ---------------------------------------------------------------------------------

    async def _route(
        self, scope: Scope, receive: Receive, headers: Mapping[str, str], request_id: str
    ) -> tuple[int, Any, list[tuple[bytes, bytes]]]:
        method, path = scope["method"], scope["path"]
        if method == "OPTIONS":
            return (
                204,
                b"",
                [
                    (b"access-control-allow-methods", b"GET, POST, OPTIONS"),
                    (b"access-control-allow-headers", b"authorization, content-type, x-request-id"),
                    (b"access-control-max-age", b"600"),
                ],
            )
        if path in ("/cds-services", "/cds-services/"):
            if method != "GET":
                raise _Answer(405, _outcome(405, "use GET"), [(b"allow", b"GET, OPTIONS")])
            return 200, self._discovery, []
        match = _SERVICE_PATH.match(path)
        if match is None or match.group(1) not in SERVICES:
            raise _Answer(404, _outcome(404, "no such CDS service"))
        if method != "POST":
            raise _Answer(405, _outcome(405, "use POST"), [(b"allow", b"POST, OPTIONS")])
        service_id, is_feedback = match.group(1), bool(match.group(2))
        principal = self._principal(headers, service_id, is_feedback)
        body = await self._json_body(receive, headers)
        meta = RequestMeta(
            client_addr=(scope.get("client") or ("", 0))[0] or "",
            user_agent=headers.get("user-agent", "")[:300],
            request_id=request_id,
            statement_timeout_ms=self.statement_timeout_ms,
        )
        if is_feedback:
            return 200, await self._feedback(service_id, principal, meta, body), []
        return 200, await self._hook(service_id, principal, meta, body), []

    def _principal(self, headers: Mapping[str, str], service_id: str, is_feedback: bool) -> Principal:
        scheme, _, token = headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise _Answer(
                401,
                _outcome(401, "authorization: Bearer <JWT signed by a registered CDS client> is required"),
                [(b"www-authenticate", b'Bearer realm="cds-services"')],
            )
        # The audience is the URL the client called (§Trusting CDS Clients: "aud ... the CDS Service
        # endpoint"): this service's own endpoint for the hook, or its base URL.
        endpoint = f"{self.base_url}/cds-services/{service_id}" + ("/feedback" if is_feedback else "")
        try:
            return self.check_token(token.strip(), endpoint)
        except Failure as failure:
            raise _Answer(HTTP_STATUS[failure.code], _outcome(HTTP_STATUS[failure.code], failure.message)) from None
        except ClientAuthUnavailable as exc:
            raise _Answer(503, _outcome(503, str(exc) or "client authentication is unavailable")) from None
        except AuthError as exc:  # its messages are written to be shown
            log.warning("unauthenticated", extra={"door": "cds-hooks", "reason": str(exc)})
            raise _Answer(
                401,
                _outcome(401, str(exc) or "token refused"),
                [(b"www-authenticate", b'Bearer error="invalid_token"')],
            ) from None

    async def _json_body(self, receive: Receive, headers: Mapping[str, str]) -> Any:
        ctype = headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype not in ("application/json", "application/fhir+json"):
            raise _Answer(415, _outcome(415, "content-type must be application/json"))
        declared = headers.get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_body_bytes):
            raise _Answer(413, _outcome(413, f"the request body is over {self.max_body_bytes} bytes"))
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _Answer(400, _outcome(400, "the client went away"))
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                raise _Answer(413, _outcome(413, f"the request body is over {self.max_body_bytes} bytes"))
            chunks.append(chunk)
            if not message.get("more_body"):
                break
        try:
            return json.loads(b"".join(chunks))
        except (ValueError, RecursionError):
            raise _Answer(400, _outcome(400, "the request body is not JSON")) from None

    async def _run(self, fn: Callable[[], Any]) -> Any:
        """A use case on the thread pool; its Failure becomes the HTTP status with an OperationOutcome."""
        try:
            return await asyncio.get_running_loop().run_in_executor(self.executor, fn)
        except Failure as failure:
            status = HTTP_STATUS[failure.code]
            raise _Answer(status, _outcome(status, failure.message, failure.problems)) from None

    # -- hooks -----------------------------------------------------------------------------------

    async def _hook(self, service_id: str, principal: Principal, meta: RequestMeta, body: Any) -> bytes:
        try:
            request = parse_hook_request(service_id, body, allow_http=self.allow_http_fhir)
        except HookRequestError as exc:
            raise _Answer(400, operation_outcome(exc.problems)) from None
        # The user the client acts for is recorded beside it in the audit (never the patient).
        try:
            principal = acting_for(principal, request.context.user_id)
        except AuthError as exc:
            raise _Answer(403, _outcome(403, str(exc))) from None
        prefetch = dict(request.prefetch)
        missing = missing_prefetch(request)
        if missing:
            if request.fhir_server is None or request.fhir_authorization is None:
                raise _Answer(
                    412,
                    _outcome(
                        412,
                        "prefetch is missing (" + ", ".join(missing) + ") and no fhirServer with fhirAuthorization"
                        " was given to read it from",
                    ),
                )
            try:
                prefetch.update(await self._fetch(request, principal, missing))
            except FhirFetchError as exc:
                raise _Answer(502, _outcome(502, str(exc))) from None
        resources = _resources(prefetch)
        draft_orders = request.context.draft_orders
        references = request.draft_order_references()
        labels = draft_order_labels(request)
        on = datetime.now(UTC).date()

        def build() -> tuple[SuppliedPatient, Any]:
            return supplied_from_fhir(
                resources,
                tenant_id=principal.tenant_id,
                on=on,
                draft_orders=draft_orders,
                reference=f"Patient/{request.context.patient_id}",
                data_label="prefetch.",
                orders_label="context.draftOrders.",
            )

        def render(evaluation: Evaluation) -> bytes:
            cards = cards_for(
                evaluation.alerts,
                evaluation.result,
                omitted=evaluation.omitted,
                draft_orders={r: r for r in references},
                source_url=self.base_url,
                order_labels=labels,
            )
            payload = json.dumps({"cards": cards}, separators=(",", ":"), ensure_ascii=False).encode()
            if len(payload) > self.max_response_bytes:
                raise Failure(
                    Code.RESOURCE_EXHAUSTED,
                    f"the answer is {len(payload)} bytes, over the {self.max_response_bytes}-byte limit",
                )
            return payload

        name = f"cds-hooks:{request.hook}"
        answer: bytes = await self._run(
            lambda: self.services.evaluations.supplied(name, principal, meta, build, render, door="cds-hooks")
        )
        return answer

    async def _fetch(self, request: HookRequest, principal: Principal, keys: Sequence[str]) -> dict[str, Any]:
        """The missing prefetch keys, read from the EHR's FHIR server with the access token it gave."""
        import httpx

        assert request.fhir_server is not None and request.fhir_authorization is not None
        base = request.fhir_server.rstrip("/")
        parts = urlsplit(base)
        if parts.scheme != "https" and not self.allow_http_fhir:
            raise FhirFetchError("fhirServer must be https")
        allowed = {h.lower() for h in self.fhir_hosts(principal)}
        if (parts.hostname or "").lower() not in allowed:
            raise FhirFetchError("fhirServer is not an allowed FHIR server host for this client")
        if self._http is None:
            self._http = httpx.AsyncClient(
                timeout=httpx.Timeout(self.fetch_timeout_s),
                follow_redirects=False,
                limits=httpx.Limits(max_connections=64),
            )
        headers = {
            "authorization": f"Bearer {request.fhir_authorization.access_token}",
            "accept": "application/fhir+json",
        }

        async def one(key: str) -> tuple[str, Any]:
            url = f"{base}/{prefetch_query(request, key)}"
            entries: list[Any] = []
            first: Any = None
            for _page in range(20):  # a searchset is read whole, up to 20 pages
                try:
                    response = await self._http.get(url, headers=headers)
                except httpx.HTTPError as exc:
                    raise FhirFetchError(
                        f"prefetch {key}: the FHIR server did not answer ({type(exc).__name__})"
                    ) from None
                if response.status_code == 404 and first is None and "?" not in url:
                    return key, None
                if response.status_code != 200:
                    raise FhirFetchError(f"prefetch {key}: the FHIR server answered {response.status_code}")
                try:
                    doc = response.json()
                except ValueError:
                    raise FhirFetchError(f"prefetch {key}: the FHIR server's answer is not JSON") from None
                if not isinstance(doc, dict) or doc.get("resourceType") != "Bundle":
                    return key, doc
                first = first or doc
                entries += doc.get("entry") or []
                nxt = next((link.get("url") for link in doc.get("link") or [] if link.get("relation") == "next"), None)
                if not nxt:
                    return key, {**first, "entry": entries}
                if urlsplit(nxt).hostname != parts.hostname:
                    raise FhirFetchError(f"prefetch {key}: the next page is on another host")
                url = nxt
            raise FhirFetchError(f"prefetch {key}: more than 20 pages")

        return dict(await asyncio.gather(*(one(k) for k in keys)))

    # -- feedback --------------------------------------------------------------------------------

    async def _feedback(self, service_id: str, principal: Principal, meta: RequestMeta, body: Any) -> dict[str, Any]:
        try:
            items = parse_feedback(body, source_url=self.base_url)
        except HookRequestError as exc:
            raise _Answer(400, operation_outcome(exc.problems)) from None

        feedback = [
            Feedback(
                alert_id=item.card,
                outcome=item.outcome.upper(),
                reason=item.reason_name,
                comment=(item.override_reason.user_comment if item.override_reason else None) or "",
            )
            for item in items
        ]

        def record() -> list[str]:
            return self.services.feedback.record(
                f"cds-hooks:feedback:{service_id}", principal, meta, feedback, idempotent=True, door="cds-hooks"
            )

        await self._run(record)
        return {}


def _resources(prefetch: Mapping[str, Any]) -> dict[str, Any]:
    """Every resource of the prefetch answers (a resource, or a searchset Bundle's entries) as one
    collection Bundle, the entries' fullUrls kept so that references between them still resolve."""
    entries: list[Any] = []
    for value in prefetch.values():
        if value is None:
            continue
        if isinstance(value, dict) and value.get("resourceType") == "Bundle":
            entries += [e for e in value.get("entry") or [] if isinstance(e, dict) and e.get("resource")]
        else:
            entries.append({"resource": value})
    return {"resourceType": "Bundle", "type": "collection", "entry": entries}
