import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Severity(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SEVERITY_UNSPECIFIED: _ClassVar[Severity]
    INFO: _ClassVar[Severity]
    LOW: _ClassVar[Severity]
    MODERATE: _ClassVar[Severity]
    HIGH: _ClassVar[Severity]
    CRITICAL: _ClassVar[Severity]

class EvidenceLevel(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EVIDENCE_LEVEL_UNSPECIFIED: _ClassVar[EvidenceLevel]
    EVIDENCE_UNKNOWN: _ClassVar[EvidenceLevel]
    EXPERT_OPINION: _ClassVar[EvidenceLevel]
    CASE_REPORTS: _ClassVar[EvidenceLevel]
    OBSERVATIONAL: _ClassVar[EvidenceLevel]
    CLINICAL_TRIAL: _ClassVar[EvidenceLevel]
    SYSTEMATIC_REVIEW: _ClassVar[EvidenceLevel]

class AlertKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ALERT_KIND_UNSPECIFIED: _ClassVar[AlertKind]
    DRUG_DRUG_INTERACTION: _ClassVar[AlertKind]
    DRUG_ALLERGY: _ClassVar[AlertKind]
    FOOD_ALLERGY: _ClassVar[AlertKind]
    FOOD_DRUG_INTERACTION: _ClassVar[AlertKind]
    DUPLICATE_THERAPY: _ClassVar[AlertKind]
    DRUG_CONDITION: _ClassVar[AlertKind]
    DOSE_RANGE: _ClassVar[AlertKind]
    AGE_RELATED: _ClassVar[AlertKind]
    PREGNANCY: _ClassVar[AlertKind]
    RENAL: _ClassVar[AlertKind]
    LAB_VALUE: _ClassVar[AlertKind]
    OTHER: _ClassVar[AlertKind]

class UnresolvedKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    UNRESOLVED_KIND_UNSPECIFIED: _ClassVar[UnresolvedKind]
    MEDICATION: _ClassVar[UnresolvedKind]
    ALLERGY: _ClassVar[UnresolvedKind]
    FOOD: _ClassVar[UnresolvedKind]

class UnresolvedReason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    UNRESOLVED_REASON_UNSPECIFIED: _ClassVar[UnresolvedReason]
    UNRECOGNISED: _ClassVar[UnresolvedReason]
    AMBIGUOUS: _ClassVar[UnresolvedReason]
    PARTIAL: _ClassVar[UnresolvedReason]
    MISMATCH: _ClassVar[UnresolvedReason]

class Completeness(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    COMPLETENESS_UNSPECIFIED: _ClassVar[Completeness]
    COMPLETE: _ClassVar[Completeness]
    INCOMPLETE: _ClassVar[Completeness]

class EmergencyReasonCode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EMERGENCY_REASON_CODE_UNSPECIFIED: _ClassVar[EmergencyReasonCode]
    ETREAT: _ClassVar[EmergencyReasonCode]
    BTG: _ClassVar[EmergencyReasonCode]

class PregnancyStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PREGNANCY_STATUS_UNSPECIFIED: _ClassVar[PregnancyStatus]
    PREGNANCY_STATUS_PREGNANT: _ClassVar[PregnancyStatus]
    PREGNANCY_STATUS_NOT_PREGNANT: _ClassVar[PregnancyStatus]
    PREGNANCY_STATUS_UNKNOWN: _ClassVar[PregnancyStatus]

class LactationStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    LACTATION_STATUS_UNSPECIFIED: _ClassVar[LactationStatus]
    LACTATION_STATUS_LACTATING: _ClassVar[LactationStatus]
    LACTATION_STATUS_NOT_LACTATING: _ClassVar[LactationStatus]
    LACTATION_STATUS_UNKNOWN: _ClassVar[LactationStatus]

class FeedbackOutcome(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    FEEDBACK_OUTCOME_UNSPECIFIED: _ClassVar[FeedbackOutcome]
    ACCEPTED: _ClassVar[FeedbackOutcome]
    OVERRIDDEN: _ClassVar[FeedbackOutcome]

class OverrideReason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    OVERRIDE_REASON_UNSPECIFIED: _ClassVar[OverrideReason]
    NOT_CLINICALLY_RELEVANT: _ClassVar[OverrideReason]
    BENEFIT_OUTWEIGHS_RISK: _ClassVar[OverrideReason]
    PATIENT_ALREADY_TOLERATES: _ClassVar[OverrideReason]
    WILL_MONITOR: _ClassVar[OverrideReason]
    DOSE_ADJUSTED: _ClassVar[OverrideReason]
    ALERT_INCORRECT: _ClassVar[OverrideReason]
    OTHER_REASON: _ClassVar[OverrideReason]
SEVERITY_UNSPECIFIED: Severity
INFO: Severity
LOW: Severity
MODERATE: Severity
HIGH: Severity
CRITICAL: Severity
EVIDENCE_LEVEL_UNSPECIFIED: EvidenceLevel
EVIDENCE_UNKNOWN: EvidenceLevel
EXPERT_OPINION: EvidenceLevel
CASE_REPORTS: EvidenceLevel
OBSERVATIONAL: EvidenceLevel
CLINICAL_TRIAL: EvidenceLevel
SYSTEMATIC_REVIEW: EvidenceLevel
ALERT_KIND_UNSPECIFIED: AlertKind
DRUG_DRUG_INTERACTION: AlertKind
DRUG_ALLERGY: AlertKind
FOOD_ALLERGY: AlertKind
FOOD_DRUG_INTERACTION: AlertKind
DUPLICATE_THERAPY: AlertKind
DRUG_CONDITION: AlertKind
DOSE_RANGE: AlertKind
AGE_RELATED: AlertKind
PREGNANCY: AlertKind
RENAL: AlertKind
LAB_VALUE: AlertKind
OTHER: AlertKind
UNRESOLVED_KIND_UNSPECIFIED: UnresolvedKind
MEDICATION: UnresolvedKind
ALLERGY: UnresolvedKind
FOOD: UnresolvedKind
UNRESOLVED_REASON_UNSPECIFIED: UnresolvedReason
UNRECOGNISED: UnresolvedReason
AMBIGUOUS: UnresolvedReason
PARTIAL: UnresolvedReason
MISMATCH: UnresolvedReason
COMPLETENESS_UNSPECIFIED: Completeness
COMPLETE: Completeness
INCOMPLETE: Completeness
EMERGENCY_REASON_CODE_UNSPECIFIED: EmergencyReasonCode
ETREAT: EmergencyReasonCode
BTG: EmergencyReasonCode
PREGNANCY_STATUS_UNSPECIFIED: PregnancyStatus
PREGNANCY_STATUS_PREGNANT: PregnancyStatus
PREGNANCY_STATUS_NOT_PREGNANT: PregnancyStatus
PREGNANCY_STATUS_UNKNOWN: PregnancyStatus
LACTATION_STATUS_UNSPECIFIED: LactationStatus
LACTATION_STATUS_LACTATING: LactationStatus
LACTATION_STATUS_NOT_LACTATING: LactationStatus
LACTATION_STATUS_UNKNOWN: LactationStatus
FEEDBACK_OUTCOME_UNSPECIFIED: FeedbackOutcome
ACCEPTED: FeedbackOutcome
OVERRIDDEN: FeedbackOutcome
OVERRIDE_REASON_UNSPECIFIED: OverrideReason
NOT_CLINICALLY_RELEVANT: OverrideReason
BENEFIT_OUTWEIGHS_RISK: OverrideReason
PATIENT_ALREADY_TOLERATES: OverrideReason
WILL_MONITOR: OverrideReason
DOSE_ADJUSTED: OverrideReason
ALERT_INCORRECT: OverrideReason
OTHER_REASON: OverrideReason

class Coding(_message.Message):
    __slots__ = ("system", "code", "display")
    SYSTEM_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_FIELD_NUMBER: _ClassVar[int]
    system: str
    code: str
    display: str
    def __init__(self, system: _Optional[str] = ..., code: _Optional[str] = ..., display: _Optional[str] = ...) -> None: ...

class ProposedMedication(_message.Message):
    __slots__ = ("name", "dose", "route", "frequency", "coding")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DOSE_FIELD_NUMBER: _ClassVar[int]
    ROUTE_FIELD_NUMBER: _ClassVar[int]
    FREQUENCY_FIELD_NUMBER: _ClassVar[int]
    CODING_FIELD_NUMBER: _ClassVar[int]
    name: str
    dose: str
    route: str
    frequency: str
    coding: Coding
    def __init__(self, name: _Optional[str] = ..., dose: _Optional[str] = ..., route: _Optional[str] = ..., frequency: _Optional[str] = ..., coding: _Optional[_Union[Coding, _Mapping]] = ...) -> None: ...

class EvaluateSafetyRequest(_message.Message):
    __slots__ = ("patient_id", "proposed_medications", "proposed_foods", "recipe_id", "draft_orders")
    PATIENT_ID_FIELD_NUMBER: _ClassVar[int]
    PROPOSED_MEDICATIONS_FIELD_NUMBER: _ClassVar[int]
    PROPOSED_FOODS_FIELD_NUMBER: _ClassVar[int]
    RECIPE_ID_FIELD_NUMBER: _ClassVar[int]
    DRAFT_ORDERS_FIELD_NUMBER: _ClassVar[int]
    patient_id: str
    proposed_medications: _containers.RepeatedCompositeFieldContainer[ProposedMedication]
    proposed_foods: _containers.RepeatedScalarFieldContainer[str]
    recipe_id: str
    draft_orders: bytes
    def __init__(self, patient_id: _Optional[str] = ..., proposed_medications: _Optional[_Iterable[_Union[ProposedMedication, _Mapping]]] = ..., proposed_foods: _Optional[_Iterable[str]] = ..., recipe_id: _Optional[str] = ..., draft_orders: _Optional[bytes] = ...) -> None: ...

class EvaluateSuppliedDataRequest(_message.Message):
    __slots__ = ("patient_data", "draft_orders", "proposed_medications", "proposed_foods", "patient_reference")
    PATIENT_DATA_FIELD_NUMBER: _ClassVar[int]
    DRAFT_ORDERS_FIELD_NUMBER: _ClassVar[int]
    PROPOSED_MEDICATIONS_FIELD_NUMBER: _ClassVar[int]
    PROPOSED_FOODS_FIELD_NUMBER: _ClassVar[int]
    PATIENT_REFERENCE_FIELD_NUMBER: _ClassVar[int]
    patient_data: bytes
    draft_orders: bytes
    proposed_medications: _containers.RepeatedCompositeFieldContainer[ProposedMedication]
    proposed_foods: _containers.RepeatedScalarFieldContainer[str]
    patient_reference: str
    def __init__(self, patient_data: _Optional[bytes] = ..., draft_orders: _Optional[bytes] = ..., proposed_medications: _Optional[_Iterable[_Union[ProposedMedication, _Mapping]]] = ..., proposed_foods: _Optional[_Iterable[str]] = ..., patient_reference: _Optional[str] = ...) -> None: ...

class Alert(_message.Message):
    __slots__ = ("alert_id", "kind", "severity", "summary", "detail", "recommendation", "evidence", "involved_item_ids", "rule_id", "rule_version", "interruptive", "references")
    ALERT_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    SEVERITY_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    RECOMMENDATION_FIELD_NUMBER: _ClassVar[int]
    EVIDENCE_FIELD_NUMBER: _ClassVar[int]
    INVOLVED_ITEM_IDS_FIELD_NUMBER: _ClassVar[int]
    RULE_ID_FIELD_NUMBER: _ClassVar[int]
    RULE_VERSION_FIELD_NUMBER: _ClassVar[int]
    INTERRUPTIVE_FIELD_NUMBER: _ClassVar[int]
    REFERENCES_FIELD_NUMBER: _ClassVar[int]
    alert_id: str
    kind: AlertKind
    severity: Severity
    summary: str
    detail: str
    recommendation: str
    evidence: EvidenceLevel
    involved_item_ids: _containers.RepeatedScalarFieldContainer[str]
    rule_id: str
    rule_version: int
    interruptive: bool
    references: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, alert_id: _Optional[str] = ..., kind: _Optional[_Union[AlertKind, str]] = ..., severity: _Optional[_Union[Severity, str]] = ..., summary: _Optional[str] = ..., detail: _Optional[str] = ..., recommendation: _Optional[str] = ..., evidence: _Optional[_Union[EvidenceLevel, str]] = ..., involved_item_ids: _Optional[_Iterable[str]] = ..., rule_id: _Optional[str] = ..., rule_version: _Optional[int] = ..., interruptive: _Optional[bool] = ..., references: _Optional[_Iterable[str]] = ...) -> None: ...

class RuleIssue(_message.Message):
    __slots__ = ("rule_id", "rule_version", "reason", "insufficient_data")
    RULE_ID_FIELD_NUMBER: _ClassVar[int]
    RULE_VERSION_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    INSUFFICIENT_DATA_FIELD_NUMBER: _ClassVar[int]
    rule_id: str
    rule_version: int
    reason: str
    insufficient_data: bool
    def __init__(self, rule_id: _Optional[str] = ..., rule_version: _Optional[int] = ..., reason: _Optional[str] = ..., insufficient_data: _Optional[bool] = ...) -> None: ...

class ResultSignature(_message.Message):
    __slots__ = ("algorithm", "key_id", "canonical", "signature", "digest", "scheme")
    ALGORITHM_FIELD_NUMBER: _ClassVar[int]
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    CANONICAL_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    SCHEME_FIELD_NUMBER: _ClassVar[int]
    algorithm: str
    key_id: str
    canonical: bytes
    signature: bytes
    digest: bytes
    scheme: str
    def __init__(self, algorithm: _Optional[str] = ..., key_id: _Optional[str] = ..., canonical: _Optional[bytes] = ..., signature: _Optional[bytes] = ..., digest: _Optional[bytes] = ..., scheme: _Optional[str] = ...) -> None: ...

class UnresolvedItem(_message.Message):
    __slots__ = ("item_id", "kind", "reason", "text", "parts", "suggestions", "notes")
    ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    PARTS_FIELD_NUMBER: _ClassVar[int]
    SUGGESTIONS_FIELD_NUMBER: _ClassVar[int]
    NOTES_FIELD_NUMBER: _ClassVar[int]
    item_id: str
    kind: UnresolvedKind
    reason: UnresolvedReason
    text: str
    parts: _containers.RepeatedScalarFieldContainer[str]
    suggestions: _containers.RepeatedScalarFieldContainer[str]
    notes: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, item_id: _Optional[str] = ..., kind: _Optional[_Union[UnresolvedKind, str]] = ..., reason: _Optional[_Union[UnresolvedReason, str]] = ..., text: _Optional[str] = ..., parts: _Optional[_Iterable[str]] = ..., suggestions: _Optional[_Iterable[str]] = ..., notes: _Optional[_Iterable[str]] = ...) -> None: ...

class EvaluateSafetyResponse(_message.Message):
    __slots__ = ("evaluation_id", "alerts", "complete", "incomplete_rules", "ruleset_version", "knowledge_version", "evaluated_at", "signature", "unresolved_items", "vocabulary_version", "completeness")
    EVALUATION_ID_FIELD_NUMBER: _ClassVar[int]
    ALERTS_FIELD_NUMBER: _ClassVar[int]
    COMPLETE_FIELD_NUMBER: _ClassVar[int]
    INCOMPLETE_RULES_FIELD_NUMBER: _ClassVar[int]
    RULESET_VERSION_FIELD_NUMBER: _ClassVar[int]
    KNOWLEDGE_VERSION_FIELD_NUMBER: _ClassVar[int]
    EVALUATED_AT_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    UNRESOLVED_ITEMS_FIELD_NUMBER: _ClassVar[int]
    VOCABULARY_VERSION_FIELD_NUMBER: _ClassVar[int]
    COMPLETENESS_FIELD_NUMBER: _ClassVar[int]
    evaluation_id: str
    alerts: _containers.RepeatedCompositeFieldContainer[Alert]
    complete: bool
    incomplete_rules: _containers.RepeatedCompositeFieldContainer[RuleIssue]
    ruleset_version: str
    knowledge_version: str
    evaluated_at: _timestamp_pb2.Timestamp
    signature: ResultSignature
    unresolved_items: _containers.RepeatedCompositeFieldContainer[UnresolvedItem]
    vocabulary_version: str
    completeness: Completeness
    def __init__(self, evaluation_id: _Optional[str] = ..., alerts: _Optional[_Iterable[_Union[Alert, _Mapping]]] = ..., complete: _Optional[bool] = ..., incomplete_rules: _Optional[_Iterable[_Union[RuleIssue, _Mapping]]] = ..., ruleset_version: _Optional[str] = ..., knowledge_version: _Optional[str] = ..., evaluated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., signature: _Optional[_Union[ResultSignature, _Mapping]] = ..., unresolved_items: _Optional[_Iterable[_Union[UnresolvedItem, _Mapping]]] = ..., vocabulary_version: _Optional[str] = ..., completeness: _Optional[_Union[Completeness, str]] = ...) -> None: ...

class EmergencyAccessRequest(_message.Message):
    __slots__ = ("patient_id", "reason_code", "reason_text")
    PATIENT_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_CODE_FIELD_NUMBER: _ClassVar[int]
    REASON_TEXT_FIELD_NUMBER: _ClassVar[int]
    patient_id: str
    reason_code: EmergencyReasonCode
    reason_text: str
    def __init__(self, patient_id: _Optional[str] = ..., reason_code: _Optional[_Union[EmergencyReasonCode, str]] = ..., reason_text: _Optional[str] = ...) -> None: ...

class EmergencyAllergy(_message.Message):
    __slots__ = ("allergy_id", "allergen", "category", "severity", "reactions", "emergency_medication")
    ALLERGY_ID_FIELD_NUMBER: _ClassVar[int]
    ALLERGEN_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    SEVERITY_FIELD_NUMBER: _ClassVar[int]
    REACTIONS_FIELD_NUMBER: _ClassVar[int]
    EMERGENCY_MEDICATION_FIELD_NUMBER: _ClassVar[int]
    allergy_id: str
    allergen: str
    category: str
    severity: str
    reactions: _containers.RepeatedScalarFieldContainer[str]
    emergency_medication: str
    def __init__(self, allergy_id: _Optional[str] = ..., allergen: _Optional[str] = ..., category: _Optional[str] = ..., severity: _Optional[str] = ..., reactions: _Optional[_Iterable[str]] = ..., emergency_medication: _Optional[str] = ...) -> None: ...

class EmergencyMedication(_message.Message):
    __slots__ = ("medication_id", "name", "brand_name", "dose", "frequency", "route", "is_emergency_medication")
    MEDICATION_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    BRAND_NAME_FIELD_NUMBER: _ClassVar[int]
    DOSE_FIELD_NUMBER: _ClassVar[int]
    FREQUENCY_FIELD_NUMBER: _ClassVar[int]
    ROUTE_FIELD_NUMBER: _ClassVar[int]
    IS_EMERGENCY_MEDICATION_FIELD_NUMBER: _ClassVar[int]
    medication_id: str
    name: str
    brand_name: str
    dose: str
    frequency: str
    route: str
    is_emergency_medication: bool
    def __init__(self, medication_id: _Optional[str] = ..., name: _Optional[str] = ..., brand_name: _Optional[str] = ..., dose: _Optional[str] = ..., frequency: _Optional[str] = ..., route: _Optional[str] = ..., is_emergency_medication: _Optional[bool] = ...) -> None: ...

class EmergencyCondition(_message.Message):
    __slots__ = ("condition_id", "name", "code", "is_critical")
    CONDITION_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    IS_CRITICAL_FIELD_NUMBER: _ClassVar[int]
    condition_id: str
    name: str
    code: str
    is_critical: bool
    def __init__(self, condition_id: _Optional[str] = ..., name: _Optional[str] = ..., code: _Optional[str] = ..., is_critical: _Optional[bool] = ...) -> None: ...

class EmergencyAccessResponse(_message.Message):
    __slots__ = ("grant_id", "expires_at", "critical_allergies", "active_medications", "active_conditions", "emergency_medications", "audit_id")
    GRANT_ID_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    CRITICAL_ALLERGIES_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_MEDICATIONS_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_CONDITIONS_FIELD_NUMBER: _ClassVar[int]
    EMERGENCY_MEDICATIONS_FIELD_NUMBER: _ClassVar[int]
    AUDIT_ID_FIELD_NUMBER: _ClassVar[int]
    grant_id: str
    expires_at: _timestamp_pb2.Timestamp
    critical_allergies: _containers.RepeatedCompositeFieldContainer[EmergencyAllergy]
    active_medications: _containers.RepeatedCompositeFieldContainer[EmergencyMedication]
    active_conditions: _containers.RepeatedCompositeFieldContainer[EmergencyCondition]
    emergency_medications: _containers.RepeatedCompositeFieldContainer[EmergencyMedication]
    audit_id: str
    def __init__(self, grant_id: _Optional[str] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., critical_allergies: _Optional[_Iterable[_Union[EmergencyAllergy, _Mapping]]] = ..., active_medications: _Optional[_Iterable[_Union[EmergencyMedication, _Mapping]]] = ..., active_conditions: _Optional[_Iterable[_Union[EmergencyCondition, _Mapping]]] = ..., emergency_medications: _Optional[_Iterable[_Union[EmergencyMedication, _Mapping]]] = ..., audit_id: _Optional[str] = ...) -> None: ...

class ListEmergencyAccessEventsRequest(_message.Message):
    __slots__ = ("unreviewed_only", "page_size", "page_token")
    UNREVIEWED_ONLY_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    unreviewed_only: bool
    page_size: int
    page_token: str
    def __init__(self, unreviewed_only: _Optional[bool] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class EmergencyAccessReview(_message.Message):
    __slots__ = ("review_id", "outcome", "reviewer_user_id", "notes", "reviewed_at")
    REVIEW_ID_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    REVIEWER_USER_ID_FIELD_NUMBER: _ClassVar[int]
    NOTES_FIELD_NUMBER: _ClassVar[int]
    REVIEWED_AT_FIELD_NUMBER: _ClassVar[int]
    review_id: str
    outcome: str
    reviewer_user_id: str
    notes: str
    reviewed_at: _timestamp_pb2.Timestamp
    def __init__(self, review_id: _Optional[str] = ..., outcome: _Optional[str] = ..., reviewer_user_id: _Optional[str] = ..., notes: _Optional[str] = ..., reviewed_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class EmergencyAccessEvent(_message.Message):
    __slots__ = ("grant_id", "patient_id", "grantee_user_id", "reason_code", "reason_text", "granted_at", "expires_at", "review_outcome", "reviewed_by", "reviewed_at", "reviews", "ended_at", "ended_by", "end_reason")
    GRANT_ID_FIELD_NUMBER: _ClassVar[int]
    PATIENT_ID_FIELD_NUMBER: _ClassVar[int]
    GRANTEE_USER_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_CODE_FIELD_NUMBER: _ClassVar[int]
    REASON_TEXT_FIELD_NUMBER: _ClassVar[int]
    GRANTED_AT_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    REVIEW_OUTCOME_FIELD_NUMBER: _ClassVar[int]
    REVIEWED_BY_FIELD_NUMBER: _ClassVar[int]
    REVIEWED_AT_FIELD_NUMBER: _ClassVar[int]
    REVIEWS_FIELD_NUMBER: _ClassVar[int]
    ENDED_AT_FIELD_NUMBER: _ClassVar[int]
    ENDED_BY_FIELD_NUMBER: _ClassVar[int]
    END_REASON_FIELD_NUMBER: _ClassVar[int]
    grant_id: str
    patient_id: str
    grantee_user_id: str
    reason_code: EmergencyReasonCode
    reason_text: str
    granted_at: _timestamp_pb2.Timestamp
    expires_at: _timestamp_pb2.Timestamp
    review_outcome: str
    reviewed_by: str
    reviewed_at: _timestamp_pb2.Timestamp
    reviews: _containers.RepeatedCompositeFieldContainer[EmergencyAccessReview]
    ended_at: _timestamp_pb2.Timestamp
    ended_by: str
    end_reason: str
    def __init__(self, grant_id: _Optional[str] = ..., patient_id: _Optional[str] = ..., grantee_user_id: _Optional[str] = ..., reason_code: _Optional[_Union[EmergencyReasonCode, str]] = ..., reason_text: _Optional[str] = ..., granted_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., review_outcome: _Optional[str] = ..., reviewed_by: _Optional[str] = ..., reviewed_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., reviews: _Optional[_Iterable[_Union[EmergencyAccessReview, _Mapping]]] = ..., ended_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., ended_by: _Optional[str] = ..., end_reason: _Optional[str] = ...) -> None: ...

class ListEmergencyAccessEventsResponse(_message.Message):
    __slots__ = ("events", "next_page_token")
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[EmergencyAccessEvent]
    next_page_token: str
    def __init__(self, events: _Optional[_Iterable[_Union[EmergencyAccessEvent, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class ReviewEmergencyAccessEventRequest(_message.Message):
    __slots__ = ("grant_id", "outcome", "notes")
    GRANT_ID_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    NOTES_FIELD_NUMBER: _ClassVar[int]
    grant_id: str
    outcome: str
    notes: str
    def __init__(self, grant_id: _Optional[str] = ..., outcome: _Optional[str] = ..., notes: _Optional[str] = ...) -> None: ...

class ReviewEmergencyAccessEventResponse(_message.Message):
    __slots__ = ("event",)
    EVENT_FIELD_NUMBER: _ClassVar[int]
    event: EmergencyAccessEvent
    def __init__(self, event: _Optional[_Union[EmergencyAccessEvent, _Mapping]] = ...) -> None: ...

class EndEmergencyAccessRequest(_message.Message):
    __slots__ = ("grant_id", "reason")
    GRANT_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    grant_id: str
    reason: str
    def __init__(self, grant_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class EndEmergencyAccessResponse(_message.Message):
    __slots__ = ("grant_id", "ended_at", "audit_id")
    GRANT_ID_FIELD_NUMBER: _ClassVar[int]
    ENDED_AT_FIELD_NUMBER: _ClassVar[int]
    AUDIT_ID_FIELD_NUMBER: _ClassVar[int]
    grant_id: str
    ended_at: _timestamp_pb2.Timestamp
    audit_id: str
    def __init__(self, grant_id: _Optional[str] = ..., ended_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., audit_id: _Optional[str] = ...) -> None: ...

class Medication(_message.Message):
    __slots__ = ("medication_id", "generic_name", "brand_name", "dose", "frequency", "route", "indication", "prescribed_by", "is_emergency_medication", "coding", "external_id")
    MEDICATION_ID_FIELD_NUMBER: _ClassVar[int]
    GENERIC_NAME_FIELD_NUMBER: _ClassVar[int]
    BRAND_NAME_FIELD_NUMBER: _ClassVar[int]
    DOSE_FIELD_NUMBER: _ClassVar[int]
    FREQUENCY_FIELD_NUMBER: _ClassVar[int]
    ROUTE_FIELD_NUMBER: _ClassVar[int]
    INDICATION_FIELD_NUMBER: _ClassVar[int]
    PRESCRIBED_BY_FIELD_NUMBER: _ClassVar[int]
    IS_EMERGENCY_MEDICATION_FIELD_NUMBER: _ClassVar[int]
    CODING_FIELD_NUMBER: _ClassVar[int]
    EXTERNAL_ID_FIELD_NUMBER: _ClassVar[int]
    medication_id: str
    generic_name: str
    brand_name: str
    dose: str
    frequency: str
    route: str
    indication: str
    prescribed_by: str
    is_emergency_medication: bool
    coding: Coding
    external_id: str
    def __init__(self, medication_id: _Optional[str] = ..., generic_name: _Optional[str] = ..., brand_name: _Optional[str] = ..., dose: _Optional[str] = ..., frequency: _Optional[str] = ..., route: _Optional[str] = ..., indication: _Optional[str] = ..., prescribed_by: _Optional[str] = ..., is_emergency_medication: _Optional[bool] = ..., coding: _Optional[_Union[Coding, _Mapping]] = ..., external_id: _Optional[str] = ...) -> None: ...

class Allergy(_message.Message):
    __slots__ = ("allergy_id", "allergen", "category", "severity", "reactions", "emergency_medication", "coding", "external_id")
    ALLERGY_ID_FIELD_NUMBER: _ClassVar[int]
    ALLERGEN_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    SEVERITY_FIELD_NUMBER: _ClassVar[int]
    REACTIONS_FIELD_NUMBER: _ClassVar[int]
    EMERGENCY_MEDICATION_FIELD_NUMBER: _ClassVar[int]
    CODING_FIELD_NUMBER: _ClassVar[int]
    EXTERNAL_ID_FIELD_NUMBER: _ClassVar[int]
    allergy_id: str
    allergen: str
    category: str
    severity: str
    reactions: _containers.RepeatedScalarFieldContainer[str]
    emergency_medication: str
    coding: Coding
    external_id: str
    def __init__(self, allergy_id: _Optional[str] = ..., allergen: _Optional[str] = ..., category: _Optional[str] = ..., severity: _Optional[str] = ..., reactions: _Optional[_Iterable[str]] = ..., emergency_medication: _Optional[str] = ..., coding: _Optional[_Union[Coding, _Mapping]] = ..., external_id: _Optional[str] = ...) -> None: ...

class Condition(_message.Message):
    __slots__ = ("condition_id", "name", "code", "is_critical", "external_id")
    CONDITION_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    IS_CRITICAL_FIELD_NUMBER: _ClassVar[int]
    EXTERNAL_ID_FIELD_NUMBER: _ClassVar[int]
    condition_id: str
    name: str
    code: str
    is_critical: bool
    external_id: str
    def __init__(self, condition_id: _Optional[str] = ..., name: _Optional[str] = ..., code: _Optional[str] = ..., is_critical: _Optional[bool] = ..., external_id: _Optional[str] = ...) -> None: ...

class BiometricReading(_message.Message):
    __slots__ = ("reading_id", "reading_type", "value", "unit", "taken_at", "coding")
    READING_ID_FIELD_NUMBER: _ClassVar[int]
    READING_TYPE_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    UNIT_FIELD_NUMBER: _ClassVar[int]
    TAKEN_AT_FIELD_NUMBER: _ClassVar[int]
    CODING_FIELD_NUMBER: _ClassVar[int]
    reading_id: str
    reading_type: str
    value: float
    unit: str
    taken_at: _timestamp_pb2.Timestamp
    coding: Coding
    def __init__(self, reading_id: _Optional[str] = ..., reading_type: _Optional[str] = ..., value: _Optional[float] = ..., unit: _Optional[str] = ..., taken_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., coding: _Optional[_Union[Coding, _Mapping]] = ...) -> None: ...

class PutMedicationRequest(_message.Message):
    __slots__ = ("patient_id", "medication")
    PATIENT_ID_FIELD_NUMBER: _ClassVar[int]
    MEDICATION_FIELD_NUMBER: _ClassVar[int]
    patient_id: str
    medication: Medication
    def __init__(self, patient_id: _Optional[str] = ..., medication: _Optional[_Union[Medication, _Mapping]] = ...) -> None: ...

class PutAllergyRequest(_message.Message):
    __slots__ = ("patient_id", "allergy")
    PATIENT_ID_FIELD_NUMBER: _ClassVar[int]
    ALLERGY_FIELD_NUMBER: _ClassVar[int]
    patient_id: str
    allergy: Allergy
    def __init__(self, patient_id: _Optional[str] = ..., allergy: _Optional[_Union[Allergy, _Mapping]] = ...) -> None: ...

class PutConditionRequest(_message.Message):
    __slots__ = ("patient_id", "condition")
    PATIENT_ID_FIELD_NUMBER: _ClassVar[int]
    CONDITION_FIELD_NUMBER: _ClassVar[int]
    patient_id: str
    condition: Condition
    def __init__(self, patient_id: _Optional[str] = ..., condition: _Optional[_Union[Condition, _Mapping]] = ...) -> None: ...

class PutBiometricReadingRequest(_message.Message):
    __slots__ = ("patient_id", "reading")
    PATIENT_ID_FIELD_NUMBER: _ClassVar[int]
    READING_FIELD_NUMBER: _ClassVar[int]
    patient_id: str
    reading: BiometricReading
    def __init__(self, patient_id: _Optional[str] = ..., reading: _Optional[_Union[BiometricReading, _Mapping]] = ...) -> None: ...

class Pregnancy(_message.Message):
    __slots__ = ("status", "recorded_at", "gestational_weeks", "gestational_days", "estimated_delivery_date")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    RECORDED_AT_FIELD_NUMBER: _ClassVar[int]
    GESTATIONAL_WEEKS_FIELD_NUMBER: _ClassVar[int]
    GESTATIONAL_DAYS_FIELD_NUMBER: _ClassVar[int]
    ESTIMATED_DELIVERY_DATE_FIELD_NUMBER: _ClassVar[int]
    status: PregnancyStatus
    recorded_at: _timestamp_pb2.Timestamp
    gestational_weeks: int
    gestational_days: int
    estimated_delivery_date: str
    def __init__(self, status: _Optional[_Union[PregnancyStatus, str]] = ..., recorded_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., gestational_weeks: _Optional[int] = ..., gestational_days: _Optional[int] = ..., estimated_delivery_date: _Optional[str] = ...) -> None: ...

class Lactation(_message.Message):
    __slots__ = ("status", "recorded_at")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    RECORDED_AT_FIELD_NUMBER: _ClassVar[int]
    status: LactationStatus
    recorded_at: _timestamp_pb2.Timestamp
    def __init__(self, status: _Optional[_Union[LactationStatus, str]] = ..., recorded_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class PutDemographicsRequest(_message.Message):
    __slots__ = ("patient_id", "birth_date", "sex", "pregnancy", "lactation")
    PATIENT_ID_FIELD_NUMBER: _ClassVar[int]
    BIRTH_DATE_FIELD_NUMBER: _ClassVar[int]
    SEX_FIELD_NUMBER: _ClassVar[int]
    PREGNANCY_FIELD_NUMBER: _ClassVar[int]
    LACTATION_FIELD_NUMBER: _ClassVar[int]
    patient_id: str
    birth_date: str
    sex: str
    pregnancy: Pregnancy
    lactation: Lactation
    def __init__(self, patient_id: _Optional[str] = ..., birth_date: _Optional[str] = ..., sex: _Optional[str] = ..., pregnancy: _Optional[_Union[Pregnancy, _Mapping]] = ..., lactation: _Optional[_Union[Lactation, _Mapping]] = ...) -> None: ...

class DeactivateMedicationRequest(_message.Message):
    __slots__ = ("patient_id", "medication_id")
    PATIENT_ID_FIELD_NUMBER: _ClassVar[int]
    MEDICATION_ID_FIELD_NUMBER: _ClassVar[int]
    patient_id: str
    medication_id: str
    def __init__(self, patient_id: _Optional[str] = ..., medication_id: _Optional[str] = ...) -> None: ...

class RecordWriteResponse(_message.Message):
    __slots__ = ("id", "profile_version")
    ID_FIELD_NUMBER: _ClassVar[int]
    PROFILE_VERSION_FIELD_NUMBER: _ClassVar[int]
    id: str
    profile_version: int
    def __init__(self, id: _Optional[str] = ..., profile_version: _Optional[int] = ...) -> None: ...

class GetHealthProfileRequest(_message.Message):
    __slots__ = ("patient_id",)
    PATIENT_ID_FIELD_NUMBER: _ClassVar[int]
    patient_id: str
    def __init__(self, patient_id: _Optional[str] = ...) -> None: ...

class HealthProfile(_message.Message):
    __slots__ = ("patient_id", "version", "subscription_tier", "age", "sex", "pregnancy_status", "medications", "allergies", "conditions", "latest_biometrics", "withheld_categories", "birth_date", "pregnancy", "lactation")
    PATIENT_ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    SUBSCRIPTION_TIER_FIELD_NUMBER: _ClassVar[int]
    AGE_FIELD_NUMBER: _ClassVar[int]
    SEX_FIELD_NUMBER: _ClassVar[int]
    PREGNANCY_STATUS_FIELD_NUMBER: _ClassVar[int]
    MEDICATIONS_FIELD_NUMBER: _ClassVar[int]
    ALLERGIES_FIELD_NUMBER: _ClassVar[int]
    CONDITIONS_FIELD_NUMBER: _ClassVar[int]
    LATEST_BIOMETRICS_FIELD_NUMBER: _ClassVar[int]
    WITHHELD_CATEGORIES_FIELD_NUMBER: _ClassVar[int]
    BIRTH_DATE_FIELD_NUMBER: _ClassVar[int]
    PREGNANCY_FIELD_NUMBER: _ClassVar[int]
    LACTATION_FIELD_NUMBER: _ClassVar[int]
    patient_id: str
    version: int
    subscription_tier: str
    age: int
    sex: str
    pregnancy_status: str
    medications: _containers.RepeatedCompositeFieldContainer[Medication]
    allergies: _containers.RepeatedCompositeFieldContainer[Allergy]
    conditions: _containers.RepeatedCompositeFieldContainer[Condition]
    latest_biometrics: _containers.RepeatedCompositeFieldContainer[BiometricReading]
    withheld_categories: _containers.RepeatedScalarFieldContainer[str]
    birth_date: str
    pregnancy: Pregnancy
    lactation: Lactation
    def __init__(self, patient_id: _Optional[str] = ..., version: _Optional[int] = ..., subscription_tier: _Optional[str] = ..., age: _Optional[int] = ..., sex: _Optional[str] = ..., pregnancy_status: _Optional[str] = ..., medications: _Optional[_Iterable[_Union[Medication, _Mapping]]] = ..., allergies: _Optional[_Iterable[_Union[Allergy, _Mapping]]] = ..., conditions: _Optional[_Iterable[_Union[Condition, _Mapping]]] = ..., latest_biometrics: _Optional[_Iterable[_Union[BiometricReading, _Mapping]]] = ..., withheld_categories: _Optional[_Iterable[str]] = ..., birth_date: _Optional[str] = ..., pregnancy: _Optional[_Union[Pregnancy, _Mapping]] = ..., lactation: _Optional[_Union[Lactation, _Mapping]] = ...) -> None: ...

class GrantConsentRequest(_message.Message):
    __slots__ = ("grantee_user_id", "categories", "expires_in_days", "purpose")
    GRANTEE_USER_ID_FIELD_NUMBER: _ClassVar[int]
    CATEGORIES_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_IN_DAYS_FIELD_NUMBER: _ClassVar[int]
    PURPOSE_FIELD_NUMBER: _ClassVar[int]
    grantee_user_id: str
    categories: _containers.RepeatedScalarFieldContainer[str]
    expires_in_days: int
    purpose: str
    def __init__(self, grantee_user_id: _Optional[str] = ..., categories: _Optional[_Iterable[str]] = ..., expires_in_days: _Optional[int] = ..., purpose: _Optional[str] = ...) -> None: ...

class GrantConsentResponse(_message.Message):
    __slots__ = ("consent_id",)
    CONSENT_ID_FIELD_NUMBER: _ClassVar[int]
    consent_id: str
    def __init__(self, consent_id: _Optional[str] = ...) -> None: ...

class RevokeConsentRequest(_message.Message):
    __slots__ = ("consent_id",)
    CONSENT_ID_FIELD_NUMBER: _ClassVar[int]
    consent_id: str
    def __init__(self, consent_id: _Optional[str] = ...) -> None: ...

class RevokeConsentResponse(_message.Message):
    __slots__ = ("revoked",)
    REVOKED_FIELD_NUMBER: _ClassVar[int]
    revoked: bool
    def __init__(self, revoked: _Optional[bool] = ...) -> None: ...

class RecordAlertFeedbackRequest(_message.Message):
    __slots__ = ("evaluation_id", "alert_id", "outcome", "reason", "comment")
    EVALUATION_ID_FIELD_NUMBER: _ClassVar[int]
    ALERT_ID_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    COMMENT_FIELD_NUMBER: _ClassVar[int]
    evaluation_id: str
    alert_id: str
    outcome: FeedbackOutcome
    reason: OverrideReason
    comment: str
    def __init__(self, evaluation_id: _Optional[str] = ..., alert_id: _Optional[str] = ..., outcome: _Optional[_Union[FeedbackOutcome, str]] = ..., reason: _Optional[_Union[OverrideReason, str]] = ..., comment: _Optional[str] = ...) -> None: ...

class RecordAlertFeedbackResponse(_message.Message):
    __slots__ = ("feedback_id",)
    FEEDBACK_ID_FIELD_NUMBER: _ClassVar[int]
    feedback_id: str
    def __init__(self, feedback_id: _Optional[str] = ...) -> None: ...

class GetOverrideRatesRequest(_message.Message):
    __slots__ = ("since_days",)
    SINCE_DAYS_FIELD_NUMBER: _ClassVar[int]
    since_days: int
    def __init__(self, since_days: _Optional[int] = ...) -> None: ...

class RuleOverrideRate(_message.Message):
    __slots__ = ("rule_id", "shown", "overridden", "override_rate")
    RULE_ID_FIELD_NUMBER: _ClassVar[int]
    SHOWN_FIELD_NUMBER: _ClassVar[int]
    OVERRIDDEN_FIELD_NUMBER: _ClassVar[int]
    OVERRIDE_RATE_FIELD_NUMBER: _ClassVar[int]
    rule_id: str
    shown: int
    overridden: int
    override_rate: float
    def __init__(self, rule_id: _Optional[str] = ..., shown: _Optional[int] = ..., overridden: _Optional[int] = ..., override_rate: _Optional[float] = ...) -> None: ...

class GetOverrideRatesResponse(_message.Message):
    __slots__ = ("rules",)
    RULES_FIELD_NUMBER: _ClassVar[int]
    rules: _containers.RepeatedCompositeFieldContainer[RuleOverrideRate]
    def __init__(self, rules: _Optional[_Iterable[_Union[RuleOverrideRate, _Mapping]]] = ...) -> None: ...

class GetSigningKeyRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetSigningKeyResponse(_message.Message):
    __slots__ = ("algorithm", "key_id", "public_key", "public_key_pem")
    ALGORITHM_FIELD_NUMBER: _ClassVar[int]
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    PUBLIC_KEY_PEM_FIELD_NUMBER: _ClassVar[int]
    algorithm: str
    key_id: str
    public_key: bytes
    public_key_pem: str
    def __init__(self, algorithm: _Optional[str] = ..., key_id: _Optional[str] = ..., public_key: _Optional[bytes] = ..., public_key_pem: _Optional[str] = ...) -> None: ...

class ReplaceActiveMedicationsRequest(_message.Message):
    __slots__ = ("patient_id", "medications")
    PATIENT_ID_FIELD_NUMBER: _ClassVar[int]
    MEDICATIONS_FIELD_NUMBER: _ClassVar[int]
    patient_id: str
    medications: _containers.RepeatedCompositeFieldContainer[Medication]
    def __init__(self, patient_id: _Optional[str] = ..., medications: _Optional[_Iterable[_Union[Medication, _Mapping]]] = ...) -> None: ...

class ReplaceActiveMedicationsResponse(_message.Message):
    __slots__ = ("medication_ids", "deactivated_medication_ids", "created", "updated", "unchanged", "profile_version")
    MEDICATION_IDS_FIELD_NUMBER: _ClassVar[int]
    DEACTIVATED_MEDICATION_IDS_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    UPDATED_FIELD_NUMBER: _ClassVar[int]
    UNCHANGED_FIELD_NUMBER: _ClassVar[int]
    PROFILE_VERSION_FIELD_NUMBER: _ClassVar[int]
    medication_ids: _containers.RepeatedScalarFieldContainer[str]
    deactivated_medication_ids: _containers.RepeatedScalarFieldContainer[str]
    created: int
    updated: int
    unchanged: int
    profile_version: int
    def __init__(self, medication_ids: _Optional[_Iterable[str]] = ..., deactivated_medication_ids: _Optional[_Iterable[str]] = ..., created: _Optional[int] = ..., updated: _Optional[int] = ..., unchanged: _Optional[int] = ..., profile_version: _Optional[int] = ...) -> None: ...
