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
