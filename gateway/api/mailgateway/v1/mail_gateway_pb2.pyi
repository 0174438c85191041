import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ContactStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CONTACT_STATUS_UNSPECIFIED: _ClassVar[ContactStatus]
    CONTACT_STATUS_ACTIVE: _ClassVar[ContactStatus]
    CONTACT_STATUS_UNSUBSCRIBED: _ClassVar[ContactStatus]
    CONTACT_STATUS_BOUNCED: _ClassVar[ContactStatus]
    CONTACT_STATUS_COMPLAINED: _ClassVar[ContactStatus]
CONTACT_STATUS_UNSPECIFIED: ContactStatus
CONTACT_STATUS_ACTIVE: ContactStatus
CONTACT_STATUS_UNSUBSCRIBED: ContactStatus
CONTACT_STATUS_BOUNCED: ContactStatus
CONTACT_STATUS_COMPLAINED: ContactStatus

class SendEmailRequest(_message.Message):
    __slots__ = ("to", "subject", "text_body", "html_body", "from_address", "reply_to", "request_id", "tags")
    class TagsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    TO_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    TEXT_BODY_FIELD_NUMBER: _ClassVar[int]
    HTML_BODY_FIELD_NUMBER: _ClassVar[int]
    FROM_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    REPLY_TO_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    to: str
    subject: str
    text_body: str
    html_body: str
    from_address: str
    reply_to: str
    request_id: str
    tags: _containers.ScalarMap[str, str]
    def __init__(self, to: _Optional[str] = ..., subject: _Optional[str] = ..., text_body: _Optional[str] = ..., html_body: _Optional[str] = ..., from_address: _Optional[str] = ..., reply_to: _Optional[str] = ..., request_id: _Optional[str] = ..., tags: _Optional[_Mapping[str, str]] = ...) -> None: ...

class SendEmailResponse(_message.Message):
    __slots__ = ("message_id", "contact_id")
    MESSAGE_ID_FIELD_NUMBER: _ClassVar[int]
    CONTACT_ID_FIELD_NUMBER: _ClassVar[int]
    message_id: str
    contact_id: str
    def __init__(self, message_id: _Optional[str] = ..., contact_id: _Optional[str] = ...) -> None: ...

class GetContactStatusRequest(_message.Message):
    __slots__ = ("email", "contact_id")
    EMAIL_FIELD_NUMBER: _ClassVar[int]
    CONTACT_ID_FIELD_NUMBER: _ClassVar[int]
    email: str
    contact_id: str
    def __init__(self, email: _Optional[str] = ..., contact_id: _Optional[str] = ...) -> None: ...

class GetContactStatusResponse(_message.Message):
    __slots__ = ("contact_id", "email", "status", "updated_at", "reason")
    CONTACT_ID_FIELD_NUMBER: _ClassVar[int]
    EMAIL_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    contact_id: str
    email: str
    status: ContactStatus
    updated_at: _timestamp_pb2.Timestamp
    reason: str
    def __init__(self, contact_id: _Optional[str] = ..., email: _Optional[str] = ..., status: _Optional[_Union[ContactStatus, str]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., reason: _Optional[str] = ...) -> None: ...
