"""Issue 13, item 7: a connection cannot be held for nothing.

A peer that connects and sends nothing, stops half-way through the TLS handshake, or completes it and
then makes no call is disconnected by the server (PRANEYA_HANDSHAKE_TIMEOUT_SECONDS,
PRANEYA_MAX_CONNECTION_IDLE_SECONDS); a well-behaved client is not disturbed. A real server over TLS
(tests/fix_grpc.py) with small bounds. The waits are generous (ten times the bound) and only the
outcome is asserted, closed or not, never how long it took.
"""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import Iterator
from typing import Any

import grpc
import pytest

from engine.app.settings import ServiceSettings, SettingsError
from engine.doors.grpc.gen.praneya.safety.v1 import safety_pb2_grpc as pb_grpc
from tests.fix_grpc import RunningServer, Service, running_server
from tests.test_grpc_service import ADVISOR, evaluate

pytestmark = pytest.mark.db

HANDSHAKE_S, IDLE_S = 1, 2
PATIENT = "demo-patient-01"
# The start of a TLS 1.2+ ClientHello record: a record header announcing 512 bytes, and 6 of them.
PARTIAL_CLIENT_HELLO = b"\x16\x03\x01\x02\x00" + b"\x01\x00\x01\xfc\x03\x03"
# HTTP/2's client preface and an empty SETTINGS frame: a connection that then makes no call.
H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"


@pytest.fixture(scope="module")
def bounded(grpc_service: Service) -> Iterator[RunningServer]:
    env = {
        **grpc_service.env,
        "PRANEYA_HANDSHAKE_TIMEOUT_SECONDS": str(HANDSHAKE_S),
        "PRANEYA_MAX_CONNECTION_IDLE_SECONDS": str(IDLE_S),
    }
    with running_server(env, grpc_service.ca) as running:
        yield running


def closed_by_server(sock: socket.socket | ssl.SSLSocket, within: float) -> bool:
    """True when the server closes (or resets) the connection before `within` seconds have passed;
    whatever it sends first (HTTP/2 SETTINGS, a GOAWAY) is read and ignored."""
    deadline = time.monotonic() + within
    while (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            if sock.recv(4096) == b"":
                return True
        except TimeoutError:
            return False
        except (ConnectionResetError, BrokenPipeError, ssl.SSLEOFError, ssl.SSLZeroReturnError):
            return True
    return False


def test_a_tcp_connection_that_sends_nothing_is_closed(bounded: RunningServer) -> None:
    with socket.create_connection(("127.0.0.1", bounded.port), timeout=5) as sock:
        assert closed_by_server(sock, within=10 * HANDSHAKE_S)


def test_a_tls_handshake_stopped_half_way_is_closed(bounded: RunningServer) -> None:
    with socket.create_connection(("127.0.0.1", bounded.port), timeout=5) as sock:
        sock.sendall(PARTIAL_CLIENT_HELLO)
        assert closed_by_server(sock, within=10 * HANDSHAKE_S)


def _tls(running: RunningServer, *, h2: bool) -> ssl.SSLSocket:
    ctx = ssl.create_default_context(cadata=running.ca.decode())
    ctx.set_alpn_protocols(["h2"])
    raw = socket.create_connection(("127.0.0.1", running.port), timeout=5)
    sock = ctx.wrap_socket(raw, server_hostname="localhost")
    if h2:
        sock.sendall(H2_PREFACE)
    return sock


def test_tls_without_the_http2_preface_is_closed(bounded: RunningServer) -> None:
    with _tls(bounded, h2=False) as sock:
        assert closed_by_server(sock, within=10 * HANDSHAKE_S)


def test_an_http2_connection_that_makes_no_call_is_closed_when_idle(bounded: RunningServer) -> None:
    with _tls(bounded, h2=True) as sock:
        assert closed_by_server(sock, within=10 * IDLE_S)


def test_a_normal_client_works_before_and_after_an_idle_spell(bounded: RunningServer, grpc_service: Service) -> None:
    with bounded.channel() as channel:
        grpc.channel_ready_future(channel).result(timeout=10)
        stub: Any = pb_grpc.ClinicalSafetyStub(channel)
        assert evaluate(stub, grpc_service, PATIENT, ADVISOR).alerts
        time.sleep(2 * IDLE_S)  # the server has let the idle connection go; the channel reconnects
        assert evaluate(stub, grpc_service, PATIENT, ADVISOR).alerts


def test_the_connection_bounds_are_settings_with_safe_defaults(grpc_service: Service) -> None:
    env = {k: v for k, v in grpc_service.env.items() if "CONNECTION_IDLE" not in k and "HANDSHAKE" not in k}
    settings = ServiceSettings.from_env(env)
    assert (settings.max_connection_idle_seconds, settings.handshake_timeout_seconds) == (300, 10)
    for name in ("PRANEYA_MAX_CONNECTION_IDLE_SECONDS", "PRANEYA_HANDSHAKE_TIMEOUT_SECONDS"):
        with pytest.raises(SettingsError, match=name):
            ServiceSettings.from_env({**env, name: "0"})
