from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class EchoRequest(_message.Message):
    __slots__ = ("payload",)
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    payload: bytes
    def __init__(self, payload: _Optional[bytes] = ...) -> None: ...

class EchoResponse(_message.Message):
    __slots__ = ("payload",)
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    payload: bytes
    def __init__(self, payload: _Optional[bytes] = ...) -> None: ...

class FloorRequest(_message.Message):
    __slots__ = ("patient_id", "payload")
    PATIENT_ID_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    patient_id: str
    payload: bytes
    def __init__(self, patient_id: _Optional[str] = ..., payload: _Optional[bytes] = ...) -> None: ...

class FloorResponse(_message.Message):
    __slots__ = ("payload", "rows_read")
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    ROWS_READ_FIELD_NUMBER: _ClassVar[int]
    payload: bytes
    rows_read: int
    def __init__(self, payload: _Optional[bytes] = ..., rows_read: _Optional[int] = ...) -> None: ...

class StatsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class StatsResponse(_message.Message):
    __slots__ = ("pid", "snapshot_cache_hits", "snapshot_cache_misses", "use_case_calls", "floor_calls", "lean_floor_calls", "engine_checks", "engine_rebuilds")
    PID_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_CACHE_HITS_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_CACHE_MISSES_FIELD_NUMBER: _ClassVar[int]
    USE_CASE_CALLS_FIELD_NUMBER: _ClassVar[int]
    FLOOR_CALLS_FIELD_NUMBER: _ClassVar[int]
    LEAN_FLOOR_CALLS_FIELD_NUMBER: _ClassVar[int]
    ENGINE_CHECKS_FIELD_NUMBER: _ClassVar[int]
    ENGINE_REBUILDS_FIELD_NUMBER: _ClassVar[int]
    pid: int
    snapshot_cache_hits: int
    snapshot_cache_misses: int
    use_case_calls: int
    floor_calls: int
    lean_floor_calls: int
    engine_checks: int
    engine_rebuilds: int
    def __init__(self, pid: _Optional[int] = ..., snapshot_cache_hits: _Optional[int] = ..., snapshot_cache_misses: _Optional[int] = ..., use_case_calls: _Optional[int] = ..., floor_calls: _Optional[int] = ..., lean_floor_calls: _Optional[int] = ..., engine_checks: _Optional[int] = ..., engine_rebuilds: _Optional[int] = ...) -> None: ...
