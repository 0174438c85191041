import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ContactStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CONTACT_STATUS_UNSPECIFIED: _ClassVar[ContactStatus]
    CONTACT_STATUS_ACTIVE: _ClassVar[ContactStatus]
    CONTACT_STATUS_UNSUBSCRIBED: _ClassVar[ContactStatus]
    CONTACT_STATUS_BOUNCED: _ClassVar[ContactStatus]
    CONTACT_STATUS_COMPLAINED: _ClassVar[ContactStatus]

class Priority(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PRIORITY_UNSPECIFIED: _ClassVar[Priority]
    PRIORITY_CRITICAL: _ClassVar[Priority]
    PRIORITY_TRANSACTIONAL: _ClassVar[Priority]
    PRIORITY_BULK: _ClassVar[Priority]

class MessageState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MESSAGE_STATE_UNSPECIFIED: _ClassVar[MessageState]
    MESSAGE_STATE_QUEUED: _ClassVar[MessageState]
    MESSAGE_STATE_SENDING: _ClassVar[MessageState]
    MESSAGE_STATE_SENT: _ClassVar[MessageState]
    MESSAGE_STATE_UNKNOWN: _ClassVar[MessageState]
    MESSAGE_STATE_SUPPRESSED: _ClassVar[MessageState]
    MESSAGE_STATE_FAILED: _ClassVar[MessageState]
    MESSAGE_STATE_EXPIRED: _ClassVar[MessageState]
    MESSAGE_STATE_DELIVERED: _ClassVar[MessageState]
    MESSAGE_STATE_BOUNCED: _ClassVar[MessageState]
    MESSAGE_STATE_COMPLAINED: _ClassVar[MessageState]
    MESSAGE_STATE_CANCELLED: _ClassVar[MessageState]

class EventType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EVENT_TYPE_UNSPECIFIED: _ClassVar[EventType]
    EVENT_TYPE_QUEUED: _ClassVar[EventType]
    EVENT_TYPE_SENT: _ClassVar[EventType]
    EVENT_TYPE_UNKNOWN: _ClassVar[EventType]
    EVENT_TYPE_SUPPRESSED: _ClassVar[EventType]
    EVENT_TYPE_FAILED: _ClassVar[EventType]
    EVENT_TYPE_EXPIRED: _ClassVar[EventType]
    EVENT_TYPE_DELIVERED: _ClassVar[EventType]
    EVENT_TYPE_DELIVERY_DELAYED: _ClassVar[EventType]
    EVENT_TYPE_BOUNCED: _ClassVar[EventType]
    EVENT_TYPE_SOFT_BOUNCED: _ClassVar[EventType]
    EVENT_TYPE_COMPLAINED: _ClassVar[EventType]
    EVENT_TYPE_REJECTED: _ClassVar[EventType]
    EVENT_TYPE_CONTACT_UNSUBSCRIBED: _ClassVar[EventType]
    EVENT_TYPE_CONTACT_BOUNCED: _ClassVar[EventType]
    EVENT_TYPE_CONTACT_COMPLAINED: _ClassVar[EventType]
    EVENT_TYPE_CONTACT_REACTIVATED: _ClassVar[EventType]
    EVENT_TYPE_CANCELLED: _ClassVar[EventType]
CONTACT_STATUS_UNSPECIFIED: ContactStatus
CONTACT_STATUS_ACTIVE: ContactStatus
CONTACT_STATUS_UNSUBSCRIBED: ContactStatus
CONTACT_STATUS_BOUNCED: ContactStatus
CONTACT_STATUS_COMPLAINED: ContactStatus
PRIORITY_UNSPECIFIED: Priority
PRIORITY_CRITICAL: Priority
PRIORITY_TRANSACTIONAL: Priority
PRIORITY_BULK: Priority
MESSAGE_STATE_UNSPECIFIED: MessageState
MESSAGE_STATE_QUEUED: MessageState
MESSAGE_STATE_SENDING: MessageState
MESSAGE_STATE_SENT: MessageState
MESSAGE_STATE_UNKNOWN: MessageState
MESSAGE_STATE_SUPPRESSED: MessageState
MESSAGE_STATE_FAILED: MessageState
MESSAGE_STATE_EXPIRED: MessageState
MESSAGE_STATE_DELIVERED: MessageState
MESSAGE_STATE_BOUNCED: MessageState
MESSAGE_STATE_COMPLAINED: MessageState
MESSAGE_STATE_CANCELLED: MessageState
EVENT_TYPE_UNSPECIFIED: EventType
EVENT_TYPE_QUEUED: EventType
EVENT_TYPE_SENT: EventType
EVENT_TYPE_UNKNOWN: EventType
EVENT_TYPE_SUPPRESSED: EventType
EVENT_TYPE_FAILED: EventType
EVENT_TYPE_EXPIRED: EventType
EVENT_TYPE_DELIVERED: EventType
EVENT_TYPE_DELIVERY_DELAYED: EventType
EVENT_TYPE_BOUNCED: EventType
EVENT_TYPE_SOFT_BOUNCED: EventType
EVENT_TYPE_COMPLAINED: EventType
EVENT_TYPE_REJECTED: EventType
EVENT_TYPE_CONTACT_UNSUBSCRIBED: EventType
EVENT_TYPE_CONTACT_BOUNCED: EventType
EVENT_TYPE_CONTACT_COMPLAINED: EventType
EVENT_TYPE_CONTACT_REACTIVATED: EventType
EVENT_TYPE_CANCELLED: EventType

class SendEmailRequest(_message.Message):
    __slots__ = ("to", "subject", "text_body", "html_body", "from_address", "reply_to", "request_id", "tags", "priority", "tenant", "send_at", "attachments")
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
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    SEND_AT_FIELD_NUMBER: _ClassVar[int]
    ATTACHMENTS_FIELD_NUMBER: _ClassVar[int]
    to: str
    subject: str
    text_body: str
    html_body: str
    from_address: str
    reply_to: str
    request_id: str
    tags: _containers.ScalarMap[str, str]
    priority: Priority
    tenant: str
    send_at: _timestamp_pb2.Timestamp
    attachments: _containers.RepeatedCompositeFieldContainer[Attachment]
    def __init__(self, to: _Optional[str] = ..., subject: _Optional[str] = ..., text_body: _Optional[str] = ..., html_body: _Optional[str] = ..., from_address: _Optional[str] = ..., reply_to: _Optional[str] = ..., request_id: _Optional[str] = ..., tags: _Optional[_Mapping[str, str]] = ..., priority: _Optional[_Union[Priority, str]] = ..., tenant: _Optional[str] = ..., send_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., attachments: _Optional[_Iterable[_Union[Attachment, _Mapping]]] = ...) -> None: ...

class Attachment(_message.Message):
    __slots__ = ("filename", "content_type", "content", "content_id")
    FILENAME_FIELD_NUMBER: _ClassVar[int]
    CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    CONTENT_ID_FIELD_NUMBER: _ClassVar[int]
    filename: str
    content_type: str
    content: bytes
    content_id: str
    def __init__(self, filename: _Optional[str] = ..., content_type: _Optional[str] = ..., content: _Optional[bytes] = ..., content_id: _Optional[str] = ...) -> None: ...

class SendEmailResponse(_message.Message):
    __slots__ = ("message_id", "contact_id", "unsubscribe_url")
    MESSAGE_ID_FIELD_NUMBER: _ClassVar[int]
    CONTACT_ID_FIELD_NUMBER: _ClassVar[int]
    UNSUBSCRIBE_URL_FIELD_NUMBER: _ClassVar[int]
    message_id: str
    contact_id: str
    unsubscribe_url: str
    def __init__(self, message_id: _Optional[str] = ..., contact_id: _Optional[str] = ..., unsubscribe_url: _Optional[str] = ...) -> None: ...

class GetMessageRequest(_message.Message):
    __slots__ = ("message_id",)
    MESSAGE_ID_FIELD_NUMBER: _ClassVar[int]
    message_id: str
    def __init__(self, message_id: _Optional[str] = ...) -> None: ...

class GetMessageResponse(_message.Message):
    __slots__ = ("message_id", "contact_id", "state", "ses_message_id", "attempts", "last_error", "created_at", "updated_at", "events", "priority", "tenant", "sent_at", "send_at")
    MESSAGE_ID_FIELD_NUMBER: _ClassVar[int]
    CONTACT_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    SES_MESSAGE_ID_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    LAST_ERROR_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    SENT_AT_FIELD_NUMBER: _ClassVar[int]
    SEND_AT_FIELD_NUMBER: _ClassVar[int]
    message_id: str
    contact_id: str
    state: MessageState
    ses_message_id: str
    attempts: int
    last_error: MessageError
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    events: _containers.RepeatedCompositeFieldContainer[MessageEvent]
    priority: Priority
    tenant: str
    sent_at: _timestamp_pb2.Timestamp
    send_at: _timestamp_pb2.Timestamp
    def __init__(self, message_id: _Optional[str] = ..., contact_id: _Optional[str] = ..., state: _Optional[_Union[MessageState, str]] = ..., ses_message_id: _Optional[str] = ..., attempts: _Optional[int] = ..., last_error: _Optional[_Union[MessageError, _Mapping]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., events: _Optional[_Iterable[_Union[MessageEvent, _Mapping]]] = ..., priority: _Optional[_Union[Priority, str]] = ..., tenant: _Optional[str] = ..., sent_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., send_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class CancelMessageRequest(_message.Message):
    __slots__ = ("message_id",)
    MESSAGE_ID_FIELD_NUMBER: _ClassVar[int]
    message_id: str
    def __init__(self, message_id: _Optional[str] = ...) -> None: ...

class CancelMessageResponse(_message.Message):
    __slots__ = ("message_id", "state")
    MESSAGE_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    message_id: str
    state: MessageState
    def __init__(self, message_id: _Optional[str] = ..., state: _Optional[_Union[MessageState, str]] = ...) -> None: ...

class MessageError(_message.Message):
    __slots__ = ("reason", "ses_error_code", "description")
    REASON_FIELD_NUMBER: _ClassVar[int]
    SES_ERROR_CODE_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    reason: str
    ses_error_code: str
    description: str
    def __init__(self, reason: _Optional[str] = ..., ses_error_code: _Optional[str] = ..., description: _Optional[str] = ...) -> None: ...

class MessageEvent(_message.Message):
    __slots__ = ("type", "time")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    type: str
    time: _timestamp_pb2.Timestamp
    def __init__(self, type: _Optional[str] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

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

class WatchEventsRequest(_message.Message):
    __slots__ = ("cursor", "types", "tenant")
    CURSOR_FIELD_NUMBER: _ClassVar[int]
    TYPES_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    cursor: str
    types: _containers.RepeatedScalarFieldContainer[EventType]
    tenant: str
    def __init__(self, cursor: _Optional[str] = ..., types: _Optional[_Iterable[_Union[EventType, str]]] = ..., tenant: _Optional[str] = ...) -> None: ...

class WatchEventsResponse(_message.Message):
    __slots__ = ("cursor", "type", "message_id", "request_id", "contact_id", "tenant", "priority", "state", "previous_state", "bounce_type", "bounce_subtype", "diagnostic", "time")
    CURSOR_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    CONTACT_ID_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_STATE_FIELD_NUMBER: _ClassVar[int]
    BOUNCE_TYPE_FIELD_NUMBER: _ClassVar[int]
    BOUNCE_SUBTYPE_FIELD_NUMBER: _ClassVar[int]
    DIAGNOSTIC_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    cursor: str
    type: EventType
    message_id: str
    request_id: str
    contact_id: str
    tenant: str
    priority: Priority
    state: MessageState
    previous_state: MessageState
    bounce_type: str
    bounce_subtype: str
    diagnostic: str
    time: _timestamp_pb2.Timestamp
    def __init__(self, cursor: _Optional[str] = ..., type: _Optional[_Union[EventType, str]] = ..., message_id: _Optional[str] = ..., request_id: _Optional[str] = ..., contact_id: _Optional[str] = ..., tenant: _Optional[str] = ..., priority: _Optional[_Union[Priority, str]] = ..., state: _Optional[_Union[MessageState, str]] = ..., previous_state: _Optional[_Union[MessageState, str]] = ..., bounce_type: _Optional[str] = ..., bounce_subtype: _Optional[str] = ..., diagnostic: _Optional[str] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...
