"""Issue 13, items 11-13, end to end: completeness visible in JSON, request ids and the log lines
that carry them, override rates over the alerts shown.

A real server over TLS and PostgreSQL as praneya_app (tests/fix_grpc.py).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml
from google.protobuf.json_format import MessageToJson

from engine.doors.cli import main as praneya
from engine.doors.grpc.gen.praneya.safety.v1 import safety_pb2 as pb
from engine.doors.grpc.verify import signed_content, verify_response
from store.config import PROJECT_ROOT
from tests.fix_grpc import Service
from tests.test_grpc_service import ADVISOR, PARENT, SPOUSE, evaluate, fail, put_meds

pytestmark = pytest.mark.db

HEADER = "x-request-id"


@pytest.fixture
def svc(grpc_service: Service) -> Service:
    return grpc_service


@pytest.fixture
def stub(grpc_service: Service) -> Any:
    return grpc_service.stub()


def log_records(svc: Service) -> list[dict[str, Any]]:
    """The JSON documents of the server's log lines (each line is the JSON, then the raw extras)."""
    decoder = json.JSONDecoder()
    out = []
    for line in list(svc.logs):
        try:
            doc, _ = decoder.raw_decode(line)
        except ValueError:
            continue
        out.append(doc)
    return out


def header(call_or_error: Any) -> list[str]:
    return [v for k, v in call_or_error.initial_metadata() or () if k == HEADER]


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
    complete_patient = make_patient(tenant)
    complete = evaluate(stub, svc, complete_patient, clinician)
    assert complete.complete is True and complete.completeness == pb.COMPLETE
    assert json.loads(MessageToJson(complete))["completeness"] == "COMPLETE"

    key = stub.GetSigningKey(pb.GetSigningKeyRequest(), metadata=svc.md(ADVISOR), timeout=15)
    assert (incomplete.signature.key_id, complete.signature.key_id) == (key.key_id, key.key_id)
    for resp, name, patient in ((incomplete, "INCOMPLETE", SPOUSE), (complete, "COMPLETE", None)):
        asked = patient or complete_patient
        assert verify_response(resp, key.public_key, asked)
        assert signed_content(resp, asked)["completeness"] == name
    # An incomplete answer relabelled complete (the enum, the bool, or both) no longer verifies.
    for relabel in ({"completeness": pb.COMPLETE}, {"complete": True}, {"completeness": pb.COMPLETE, "complete": True}):
        forged = pb.EvaluateSafetyResponse()
        forged.CopyFrom(incomplete)
        for name, value in relabel.items():
            setattr(forged, name, value)
        assert not verify_response(forged, key.public_key, SPOUSE), relabel


# -- item 12: request ids and log lines -----------------------------------------------------------


def test_request_id_comes_back_on_success_and_on_errors(svc: Service, stub: Any) -> None:
    _, call = stub.EvaluateSafety.with_call(
        pb.EvaluateSafetyRequest(patient_id=PARENT), metadata=svc.md(ADVISOR), timeout=15
    )
    [rid] = header(call)
    assert len(rid) == 32 and rid.isalnum()

    with pytest.raises(grpc.RpcError) as info:
        stub.EvaluateSafety(
            pb.EvaluateSafetyRequest(patient_id="no-such-patient"), metadata=svc.md(ADVISOR), timeout=15
        )
    err: Any = info.value
    assert err.code() == grpc.StatusCode.NOT_FOUND
    [failed] = header(err)
    assert failed != rid

    # Rejected before any handler runs (no token): still answered with an id, and logged with it.
    with pytest.raises(grpc.RpcError) as info:
        stub.GetSigningKey(pb.GetSigningKeyRequest(), timeout=15)
    err = info.value
    assert err.code() == grpc.StatusCode.UNAUTHENTICATED
    [unauthenticated] = header(err)
    assert any(
        r.get("msg") == "unauthenticated" and r.get("request_id") == unauthenticated for r in log_records(svc)
    )

    # Invalid argument from the servicer (a request id for calls that never reach the database).
    with pytest.raises(grpc.RpcError) as info:
        stub.EvaluateSafety(pb.EvaluateSafetyRequest(patient_id=""), metadata=svc.md(ADVISOR), timeout=15)
    err = info.value
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert len(header(err)) == 1


def test_a_sane_caller_id_is_echoed_and_anything_else_replaced(svc: Service, stub: Any) -> None:
    mine = "caller-7f3a.Req_42"
    _, call = stub.GetSigningKey.with_call(
        pb.GetSigningKeyRequest(), metadata=(*svc.md(ADVISOR), (HEADER, mine)), timeout=15
    )
    assert header(call) == [mine]
    longest = "a" * 64
    _, call = stub.GetSigningKey.with_call(
        pb.GetSigningKeyRequest(), metadata=(*svc.md(ADVISOR), (HEADER, longest)), timeout=15
    )
    assert header(call) == [longest]

    # What gRPC lets a client send but we refuse to log: a kilobyte, spaces and quotes, JSON, a
    # percent-encoded newline. (A raw newline, a tab or non-ASCII never leaves a gRPC client: it
    # refuses the metadata itself.)
    for bad in ("x" * 1024, "a" * 65, 'id" "level":"error', "{}", "line%0Abreak", "ab/../cd", "semi;colon"):
        _, call = stub.GetSigningKey.with_call(
            pb.GetSigningKeyRequest(), metadata=(*svc.md(ADVISOR), (HEADER, bad)), timeout=15
        )
        [replaced] = header(call)
        assert replaced != bad and len(replaced) == 32 and replaced.isalnum()
    with pytest.raises((ValueError, grpc.RpcError)):
        stub.GetSigningKey(
            pb.GetSigningKeyRequest(), metadata=(*svc.md(ADVISOR), (HEADER, "evil\nINFO forged line")), timeout=15
        )
    assert not any("forged line" in line for line in svc.logs)

    # And the error path echoes a sane id too.
    with pytest.raises(grpc.RpcError) as info:
        stub.EvaluateSafety(
            pb.EvaluateSafetyRequest(patient_id="no-such-patient"),
            metadata=(*svc.md(ADVISOR), (HEADER, "trace-err-1")),
            timeout=15,
        )
    assert header(info.value) == ["trace-err-1"]


def test_the_log_line_of_an_evaluation_carries_the_request_and_evaluation_ids(svc: Service, stub: Any) -> None:
    rid = "eval-log-check-1"
    resp, call = stub.EvaluateSafety.with_call(
        pb.EvaluateSafetyRequest(patient_id=PARENT), metadata=(*svc.md(ADVISOR), (HEADER, rid)), timeout=15
    )
    assert header(call) == [rid]
    [line] = [r for r in log_records(svc) if r.get("msg") == "rpc" and r.get("request_id") == rid]
    assert line["rpc"] == "EvaluateSafety" and line["code"] == "OK"
    assert line["evaluation_id"] == resp.evaluation_id
    assert isinstance(line["duration_ms"], float)
    # A failed evaluation logs its request id, and no evaluation id (no evaluation row exists).
    fail(
        stub.EvaluateSafety,
        pb.EvaluateSafetyRequest(patient_id="no-such-patient"),
        grpc.StatusCode.NOT_FOUND,
        metadata=(*svc.md(ADVISOR), (HEADER, "eval-log-check-2")),
    )
    [failed] = [r for r in log_records(svc) if r.get("msg") == "rpc" and r.get("request_id") == "eval-log-check-2"]
    assert failed["code"] == "NOT_FOUND" and "evaluation_id" not in failed


def test_a_rules_sync_then_an_evaluation_logs_the_refresh(
    svc: Service,
    stub: Any,
    tmp_path: Path,
    make_tenant: Callable[[], str],
    make_patient: Callable[..., str],
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tenant = make_tenant()
    clinician = make_patient(tenant, role="CLINICAL_ADVISOR")
    patient = make_patient(tenant)
    evaluate(stub, svc, patient, clinician)

    def rebuilds() -> list[dict[str, Any]]:
        return [r for r in log_records(svc) if r.get("msg") == "engine rebuilt" and r.get("tenant") == tenant]

    [first] = rebuilds()
    assert first["fingerprints"]["rules"]["old"] is None and first["fingerprints"]["rules"]["new"]
    assert "rules" in first["rebuilt"] and "knowledge" in first["rebuilt"]
    assert first["counts"]["rules"] > 0 and first["counts"]["interaction_pairs"] > 0
    assert isinstance(first["seconds"], float)

    # A tenant's own copy of a global rule (other tests keep the global rule set as shipped).
    src = PROJECT_ROOT / "rules" / "renal" / "renal-metformin-egfr-below-30.yaml"
    folder = tmp_path / "rules"
    folder.mkdir()
    (folder / src.name).write_text(yaml.safe_dump(yaml.safe_load(src.read_text())))
    monkeypatch.setenv("DATABASE_URL", database_url)
    assert praneya(["rules", "sync", str(folder), "--tenant", tenant]) == 0
    time.sleep(svc.settings.engine_refresh_seconds + 0.2)
    evaluate(stub, svc, patient, clinician)

    [_, refresh] = rebuilds()
    rules_fp = refresh["fingerprints"]["rules"]
    assert rules_fp["old"] == first["fingerprints"]["rules"]["new"] and rules_fp["new"] != rules_fp["old"]
    assert refresh["fingerprints"]["knowledge"]["old"] == refresh["fingerprints"]["knowledge"]["new"]
    assert refresh["rebuilt"] == ["rules"], "knowledge did not change, so it is not reloaded"
    # The tenant's copy takes the place of the global rule of the same id.
    assert refresh["counts"]["rules"] == first["counts"]["rules"]
    assert refresh["counts"]["interaction_pairs"] == first["counts"]["interaction_pairs"]


# -- item 13: override rates over the alerts shown --------------------------------------------------


def test_override_rates_count_every_alert_shown_within_the_tenant(
    svc: Service, stub: Any, make_tenant: Callable[[], str], make_patient: Callable[..., str]
) -> None:
    def setup() -> tuple[str, str, str]:
        tenant = make_tenant()
        clinician = make_patient(tenant, role="CLINICAL_ADVISOR")
        patient = make_patient(tenant)
        put_meds(stub, svc, patient, clinician, "warfarin", "ibuprofen")
        return tenant, clinician, patient

    def ddi_of(resp: Any) -> Any:
        return next(a for a in resp.alerts if a.rule_id == "ddi-warfarin-nsaid")

    def answer(user: str, resp: Any, outcome: int, reason: int = 0) -> None:
        stub.RecordAlertFeedback(
            pb.RecordAlertFeedbackRequest(
                evaluation_id=resp.evaluation_id, alert_id=ddi_of(resp).alert_id, outcome=outcome, reason=reason
            ),
            metadata=svc.md(user),
            timeout=15,
        )

    def rates(user: str) -> dict[str, Any]:
        got = stub.GetOverrideRates(pb.GetOverrideRatesRequest(since_days=30), metadata=svc.md(user), timeout=15)
        return {r.rule_id: r for r in got.rules}

    tenant, clinician, patient = setup()
    shown = [evaluate(stub, svc, patient, clinician) for _ in range(10)]
    answer(clinician, shown[3], pb.OVERRIDDEN, pb.WILL_MONITOR)
    answer(clinician, shown[4], pb.ACCEPTED)
    # A second user overriding the same alert of the same evaluation is still one override.
    admin = make_patient(tenant, role="SUPER_ADMIN")
    answer(admin, shown[3], pb.OVERRIDDEN, pb.BENEFIT_OUTWEIGHS_RISK)

    other_tenant, other_clinician, other_patient = setup()
    theirs = [evaluate(stub, svc, other_patient, other_clinician) for _ in range(2)]
    for resp in theirs:
        answer(other_clinician, resp, pb.OVERRIDDEN, pb.NOT_CLINICALLY_RELEVANT)

    # Everyone allowed to ask in the tenant gets the tenant's numbers, not only the evaluator; an
    # advisor who evaluated nothing included (the audit trail shows them only their own rows).
    colleague = make_patient(tenant, role="CLINICAL_ADVISOR")
    for user in (clinician, admin, colleague):
        by_rule = rates(user)
        ddi = by_rule["ddi-warfarin-nsaid"]
        assert (ddi.shown, ddi.overridden) == (10, 1), user
        assert ddi.override_rate == pytest.approx(0.1)
        # Every rule that fired is counted as shown, answered or not.
        assert set(by_rule) == {a.rule_id for a in shown[0].alerts}
        assert all(by_rule[a.rule_id].shown == 10 for a in shown[0].alerts if a.rule_id != "ddi-warfarin-nsaid")
        assert next(iter(by_rule)) == "ddi-warfarin-nsaid", "most overridden first"

    mine = rates(other_clinician)["ddi-warfarin-nsaid"]
    assert (mine.shown, mine.overridden, mine.override_rate) == (2, 2, pytest.approx(1.0))
    assert tenant != other_tenant
