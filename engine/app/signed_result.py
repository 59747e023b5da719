"""What the service signs of an evaluation: a digest of a deterministic serialisation of its content.

The answer's clinical content (README: "Verifying a result") is a fixed sequence of strings and list
lengths. Its serialisation, in four parts:

1. the scheme's name and a line feed: `praneya-result-v2\n`;
2. every list's number of elements, 4 bytes big-endian each, in the order the lists come;
3. every string's length in bytes of UTF-8, 4 bytes big-endian each, in the order the strings come;
4. every string's UTF-8 bytes, concatenated in the same order.

The signature (Ed25519) is over the SHA-256 digest of those bytes. Given the fixed order, the counts
say how many strings there are and the lengths where each ends, so two different contents never
serialise alike. A caller re-derives the bytes from the answer's own fields (engine/doors/grpc/
verify.py does it for a gRPC response): what it verifies is exactly what it reads, and no copy of the
content travels with the answer. Every value is a string: enums by their gRPC API names, booleans as
"true"/"false", integers in decimal, the evaluation time as RFC 3339 in UTC as protobuf's Timestamp
JSON writes it. The order is `result_digest`'s (and the README's).
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Sequence

__all__ = ["SCHEME", "AlertFields", "IssueFields", "UnresolvedFields", "result_digest"]

SCHEME = "praneya-result-v2"
_HEADER = SCHEME.encode() + b"\n"

# (alert_id, kind, severity, summary, detail, recommendation, evidence, involved_item_ids, rule_id,
#  rule_version, interruptive, references)
AlertFields = tuple[str, str, str, str, str, str, str, Sequence[str], str, int, bool, Sequence[str]]
# (rule_id, rule_version, reason, insufficient_data)
IssueFields = tuple[str, int, str, bool]
# (item_id, kind, reason, text, parts, suggestions, notes)
UnresolvedFields = tuple[str, str, str, str, Sequence[str], Sequence[str], Sequence[str]]


def _flag(value: bool) -> str:
    return "true" if value else "false"


def result_digest(
    *,
    evaluation_id: str,
    patient_id: str,
    complete: bool,
    completeness: str,
    ruleset_version: str,
    knowledge_version: str,
    evaluated_at: str,
    vocabulary_version: str,
    alerts: Sequence[AlertFields],
    incomplete_rules: Sequence[IssueFields],
    unresolved_items: Sequence[UnresolvedFields],
) -> bytes:
    """The SHA-256 digest the service signs (the same function serves the service and a verifier)."""
    texts: list[str] = [
        evaluation_id,
        patient_id,
        _flag(complete),
        completeness,
        ruleset_version,
        knowledge_version,
        evaluated_at,
        vocabulary_version,
    ]
    counts: list[int] = [len(alerts)]
    for alert in alerts:
        involved, refs = alert[7], alert[11]
        counts += (len(involved), len(refs))
        texts += alert[:7]  # alert_id, kind, severity, summary, detail, recommendation, evidence
        texts += involved
        texts += (alert[8], str(alert[9]), _flag(alert[10]))  # rule_id, rule_version, interruptive
        texts += refs
    counts.append(len(incomplete_rules))
    for rule_id, version, reason, insufficient in incomplete_rules:
        texts += (rule_id, str(version), reason, _flag(insufficient))
    counts.append(len(unresolved_items))
    for item_id, kind, reason, text, parts, suggestions, notes in unresolved_items:
        counts += (len(parts), len(suggestions), len(notes))
        texts += (item_id, kind, reason, text)
        texts += parts
        texts += suggestions
        texts += notes
    data = [t.encode("utf-8") for t in texts]
    h = hashlib.sha256(_HEADER)
    h.update(struct.pack(f">{len(counts)}I", *counts))
    h.update(struct.pack(f">{len(data)}I", *map(len, data)))
    h.update(b"".join(data))
    return h.digest()
