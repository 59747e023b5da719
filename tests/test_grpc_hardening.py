"""Issue 13, end to end: completeness visible in JSON.

A real server over TLS and PostgreSQL as praneya_app (tests/fix_grpc.py).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from google.protobuf.json_format import MessageToJson

from engine.api.gen.praneya.safety.v1 import safety_pb2 as pb
from store.signing import verify_signature
from tests.fix_grpc import Service
from tests.test_grpc_service import ADVISOR, SPOUSE, evaluate

pytestmark = pytest.mark.db


@pytest.fixture
def svc(grpc_service: Service) -> Service:
    return grpc_service


@pytest.fixture
def stub(grpc_service: Service) -> Any:
    return grpc_service.stub()


# -- item 11: completeness in JSON ----------------------------------------------------------------


def test_completeness_is_explicit_in_json_and_signed(
    svc: Service, stub: Any, make_tenant: Callable[[], str], make_patient: Callable[..., str]
) -> None:
    incomplete = evaluate(stub, svc, SPOUSE, ADVISOR, proposed_medications=[pb.ProposedMedication(name="zzqx")])
    assert incomplete.complete is False and incomplete.completeness == pb.INCOMPLETE
    rendered = json.loads(MessageToJson(incomplete))  # default options, as grpcurl and JSON clients do
    assert rendered["completeness"] == "INCOMPLETE"
    assert '"INCOMPLETE"' in MessageToJson(incomplete)
    assert "complete" not in rendered, "the deprecated bool vanishes when false: why the enum exists"

    # A patient with nothing recorded: every rule that applies has what it needs.
    tenant = make_tenant()
    clinician = make_patient(tenant, role="CLINICAL_ADVISOR")
    complete = evaluate(stub, svc, make_patient(tenant), clinician)
    assert complete.complete is True and complete.completeness == pb.COMPLETE
    assert json.loads(MessageToJson(complete))["completeness"] == "COMPLETE"

    key = stub.GetSigningKey(pb.GetSigningKeyRequest(), metadata=svc.md(ADVISOR), timeout=15)
    assert (incomplete.signature.key_id, complete.signature.key_id) == (key.key_id, key.key_id)
    for resp, name in ((incomplete, "INCOMPLETE"), (complete, "COMPLETE")):
        sig = resp.signature
        assert verify_signature(key.public_key, sig.canonical, sig.signature)
        assert json.loads(sig.canonical)["completeness"] == name
    forged = incomplete.signature.canonical.replace(b'"INCOMPLETE"', b'"COMPLETE"')
    assert not verify_signature(key.public_key, forged, incomplete.signature.signature)
