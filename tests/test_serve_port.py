"""Only a server's own workers share its port (issue 13, item 10).

The workers bind with SO_REUSEPORT; without the supervisor's claim (engine/ops/port_claim.py) a
second `praneya serve` on the same port would join them silently.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from engine.doors.port_claim import PortInUse, claim_port
from engine.ops.dev import free_port
from store.config import PROJECT_ROOT

PRANEYA = str(Path(sys.executable).parent / "praneya")


def _reuseport_listener(port: int) -> socket.socket:
    """What a worker does: bind with SO_REUSEPORT and listen."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    s.bind(("127.0.0.1", port))
    s.listen()
    return s


# -- the claim on its own ------------------------------------------------------------------------------


def test_a_claimed_port_cannot_be_claimed_again_until_released() -> None:
    port = free_port()
    with claim_port("127.0.0.1", port):
        with pytest.raises(PortInUse, match=rf"address in use: 127\.0\.0\.1:{port} \(another praneya serve"):
            claim_port("127.0.0.1", port)  # nothing listens yet: the lock alone refuses it
    claim_port("127.0.0.1", port).release()


def test_the_claimers_own_workers_can_still_bind() -> None:
    port = free_port()
    with claim_port("127.0.0.1", port), _reuseport_listener(port), _reuseport_listener(port):
        pass


def test_a_port_someone_listens_on_cannot_be_claimed_even_with_reuseport() -> None:
    # A listener with no claim: another program, or workers whose supervisor was SIGKILLed.
    port = free_port()
    with _reuseport_listener(port):
        with pytest.raises(PortInUse, match="something already listens"):
            claim_port("127.0.0.1", port)
    claim_port("127.0.0.1", port).release()  # and the lock was not left behind


def test_port_zero_claims_nothing() -> None:
    with claim_port("127.0.0.1", 0), claim_port("127.0.0.1", 0):
        pass


# -- two `praneya serve` on one port -------------------------------------------------------------------


def _serving(address: str, ca: bytes) -> bool:
    with grpc.secure_channel(address, grpc.ssl_channel_credentials(root_certificates=ca)) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""), timeout=2)
        except grpc.RpcError:
            return False
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


@pytest.fixture(scope="module")
def first_server(
    grpc_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[dict[str, str], str, bytes]]:
    """`praneya serve` with two workers on a fixed port, SERVING; stopped at the end."""
    tmp_path = tmp_path_factory.mktemp("first-serve")
    env = {**os.environ, **grpc_env, "PORT": str(free_port()), "PRANEYA_WORKERS": "2"}
    address = f"127.0.0.1:{env['PORT']}"
    ca = (Path(grpc_env["DEV_FOLDER"]) / "ca.pem").read_bytes()
    with (tmp_path / "first.log").open("wb") as log:
        proc = subprocess.Popen([PRANEYA, "serve"], env=env, cwd=PROJECT_ROOT, stdout=log, stderr=subprocess.STDOUT)
    try:
        # Waiting for a condition (bounded so a broken start fails instead of hanging), not a duration.
        deadline = time.monotonic() + 90
        while not _serving(address, ca):
            assert proc.poll() is None, (tmp_path / "first.log").read_text()
            assert time.monotonic() < deadline, "the first server never became SERVING"
            time.sleep(0.3)
        yield env, address, ca
        assert proc.poll() is None, "the first server stopped"
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.mark.db
@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_second_serve_on_the_same_port_fails_and_the_first_keeps_serving(
    first_server: tuple[dict[str, str], str, bytes], workers: str
) -> None:
    env, address, ca = first_server
    second = subprocess.Popen(
        [PRANEYA, "serve"],
        env={**env, "PRANEYA_WORKERS": workers},
        cwd=PROJECT_ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _, stderr = second.communicate(timeout=60)  # a hang guard: the claim is refused before any worker starts
    except subprocess.TimeoutExpired:
        # SIGTERM: the supervisor stops its workers (a SIGKILL would leave them serving the port).
        second.terminate()
        second.communicate(timeout=30)
        pytest.fail("a second praneya serve started on a port that was in use")
    assert second.returncode != 0
    assert "address in use" in stderr
    assert _serving(address, ca)
