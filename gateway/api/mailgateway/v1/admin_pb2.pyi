import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from gateway.api.mailgateway.v1 import mail_gateway_pb2 as _mail_gateway_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SesListRemoval(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SES_LIST_REMOVAL_UNSPECIFIED: _ClassVar[SesListRemoval]
    SES_LIST_REMOVAL_REMOVED: _ClassVar[SesListRemoval]
    SES_LIST_REMOVAL_NOT_LISTED: _ClassVar[SesListRemoval]
    SES_LIST_REMOVAL_WAITING: _ClassVar[SesListRemoval]
    SES_LIST_REMOVAL_REFUSED: _ClassVar[SesListRemoval]
    SES_LIST_REMOVAL_NOT_ASKED: _ClassVar[SesListRemoval]

class ImportOutcome(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    IMPORT_OUTCOME_UNSPECIFIED: _ClassVar[ImportOutcome]
    IMPORT_OUTCOME_CREATED: _ClassVar[ImportOutcome]
    IMPORT_OUTCOME_CHANGED: _ClassVar[ImportOutcome]
    IMPORT_OUTCOME_UNCHANGED: _ClassVar[ImportOutcome]
    IMPORT_OUTCOME_REFUSED: _ClassVar[ImportOutcome]

class DispatchLevel(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DISPATCH_LEVEL_UNSPECIFIED: _ClassVar[DispatchLevel]
    DISPATCH_LEVEL_FULL_PACE: _ClassVar[DispatchLevel]
    DISPATCH_LEVEL_SLOWED: _ClassVar[DispatchLevel]
    DISPATCH_LEVEL_PAUSED: _ClassVar[DispatchLevel]
SES_LIST_REMOVAL_UNSPECIFIED: SesListRemoval
SES_LIST_REMOVAL_REMOVED: SesListRemoval
SES_LIST_REMOVAL_NOT_LISTED: SesListRemoval
SES_LIST_REMOVAL_WAITING: SesListRemoval
SES_LIST_REMOVAL_REFUSED: SesListRemoval
SES_LIST_REMOVAL_NOT_ASKED: SesListRemoval
IMPORT_OUTCOME_UNSPECIFIED: ImportOutcome
IMPORT_OUTCOME_CREATED: ImportOutcome
IMPORT_OUTCOME_CHANGED: ImportOutcome
IMPORT_OUTCOME_UNCHANGED: ImportOutcome
IMPORT_OUTCOME_REFUSED: ImportOutcome
DISPATCH_LEVEL_UNSPECIFIED: DispatchLevel
DISPATCH_LEVEL_FULL_PACE: DispatchLevel
DISPATCH_LEVEL_SLOWED: DispatchLevel
DISPATCH_LEVEL_PAUSED: DispatchLevel

class Contact(_message.Message):
    __slots__ = ("email", "contact_id", "status", "reason", "created_at", "updated_at")
    EMAIL_FIELD_NUMBER: _ClassVar[int]
    CONTACT_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    email: str
    contact_id: str
    status: _mail_gateway_pb2.ContactStatus
    reason: str
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    def __init__(self, email: _Optional[str] = ..., contact_id: _Optional[str] = ..., status: _Optional[_Union[_mail_gateway_pb2.ContactStatus, str]] = ..., reason: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ContactFilter(_message.Message):
    __slots__ = ("statuses", "updated_after", "updated_before")
    STATUSES_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AFTER_FIELD_NUMBER: _ClassVar[int]
    UPDATED_BEFORE_FIELD_NUMBER: _ClassVar[int]
    statuses: _containers.RepeatedScalarFieldContainer[_mail_gateway_pb2.ContactStatus]
    updated_after: _timestamp_pb2.Timestamp
    updated_before: _timestamp_pb2.Timestamp
    def __init__(self, statuses: _Optional[_Iterable[_Union[_mail_gateway_pb2.ContactStatus, str]]] = ..., updated_after: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_before: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ListContactsRequest(_message.Message):
    __slots__ = ("filter", "page_size", "page_token")
    FILTER_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    filter: ContactFilter
    page_size: int
    page_token: str
    def __init__(self, filter: _Optional[_Union[ContactFilter, _Mapping]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListContactsResponse(_message.Message):
    __slots__ = ("contacts", "next_page_token")
    CONTACTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    contacts: _containers.RepeatedCompositeFieldContainer[Contact]
    next_page_token: str
    def __init__(self, contacts: _Optional[_Iterable[_Union[Contact, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class GetContactHistoryRequest(_message.Message):
    __slots__ = ("email", "contact_id", "page_size", "page_token")
    EMAIL_FIELD_NUMBER: _ClassVar[int]
    CONTACT_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    email: str
    contact_id: str
    page_size: int
    page_token: str
    def __init__(self, email: _Optional[str] = ..., contact_id: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ContactStatusChange(_message.Message):
    __slots__ = ("from_status", "to_status", "source", "reason", "actor", "changed_at")
    FROM_STATUS_FIELD_NUMBER: _ClassVar[int]
    TO_STATUS_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    CHANGED_AT_FIELD_NUMBER: _ClassVar[int]
    from_status: _mail_gateway_pb2.ContactStatus
    to_status: _mail_gateway_pb2.ContactStatus
    source: str
    reason: str
    actor: str
    changed_at: _timestamp_pb2.Timestamp
    def __init__(self, from_status: _Optional[_Union[_mail_gateway_pb2.ContactStatus, str]] = ..., to_status: _Optional[_Union[_mail_gateway_pb2.ContactStatus, str]] = ..., source: _Optional[str] = ..., reason: _Optional[str] = ..., actor: _Optional[str] = ..., changed_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class GetContactHistoryResponse(_message.Message):
    __slots__ = ("contact", "changes", "next_page_token")
    CONTACT_FIELD_NUMBER: _ClassVar[int]
    CHANGES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    contact: Contact
    changes: _containers.RepeatedCompositeFieldContainer[ContactStatusChange]
    next_page_token: str
    def __init__(self, contact: _Optional[_Union[Contact, _Mapping]] = ..., changes: _Optional[_Iterable[_Union[ContactStatusChange, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class UpdateContactStatusRequest(_message.Message):
    __slots__ = ("email", "contact_id", "status", "reason")
    EMAIL_FIELD_NUMBER: _ClassVar[int]
    CONTACT_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    email: str
    contact_id: str
    status: _mail_gateway_pb2.ContactStatus
    reason: str
    def __init__(self, email: _Optional[str] = ..., contact_id: _Optional[str] = ..., status: _Optional[_Union[_mail_gateway_pb2.ContactStatus, str]] = ..., reason: _Optional[str] = ...) -> None: ...

class UpdateContactStatusResponse(_message.Message):
    __slots__ = ("contact", "previous_status", "changed", "ses_list_removal", "ses_list_error")
    CONTACT_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_STATUS_FIELD_NUMBER: _ClassVar[int]
    CHANGED_FIELD_NUMBER: _ClassVar[int]
    SES_LIST_REMOVAL_FIELD_NUMBER: _ClassVar[int]
    SES_LIST_ERROR_FIELD_NUMBER: _ClassVar[int]
    contact: Contact
    previous_status: _mail_gateway_pb2.ContactStatus
    changed: bool
    ses_list_removal: SesListRemoval
    ses_list_error: str
    def __init__(self, contact: _Optional[_Union[Contact, _Mapping]] = ..., previous_status: _Optional[_Union[_mail_gateway_pb2.ContactStatus, str]] = ..., changed: _Optional[bool] = ..., ses_list_removal: _Optional[_Union[SesListRemoval, str]] = ..., ses_list_error: _Optional[str] = ...) -> None: ...

class ImportContactsRequest(_message.Message):
    __slots__ = ("rows",)
    ROWS_FIELD_NUMBER: _ClassVar[int]
    rows: _containers.RepeatedCompositeFieldContainer[ImportContactRow]
    def __init__(self, rows: _Optional[_Iterable[_Union[ImportContactRow, _Mapping]]] = ...) -> None: ...

class ImportContactRow(_message.Message):
    __slots__ = ("email", "status", "reason")
    EMAIL_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    email: str
    status: _mail_gateway_pb2.ContactStatus
    reason: str
    def __init__(self, email: _Optional[str] = ..., status: _Optional[_Union[_mail_gateway_pb2.ContactStatus, str]] = ..., reason: _Optional[str] = ...) -> None: ...

class ImportContactResult(_message.Message):
    __slots__ = ("index", "outcome", "status", "detail")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    index: int
    outcome: ImportOutcome
    status: _mail_gateway_pb2.ContactStatus
    detail: str
    def __init__(self, index: _Optional[int] = ..., outcome: _Optional[_Union[ImportOutcome, str]] = ..., status: _Optional[_Union[_mail_gateway_pb2.ContactStatus, str]] = ..., detail: _Optional[str] = ...) -> None: ...

class ImportContactsResponse(_message.Message):
    __slots__ = ("results", "created_count", "changed_count", "unchanged_count", "refused_count")
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    CREATED_COUNT_FIELD_NUMBER: _ClassVar[int]
    CHANGED_COUNT_FIELD_NUMBER: _ClassVar[int]
    UNCHANGED_COUNT_FIELD_NUMBER: _ClassVar[int]
    REFUSED_COUNT_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[ImportContactResult]
    created_count: int
    changed_count: int
    unchanged_count: int
    refused_count: int
    def __init__(self, results: _Optional[_Iterable[_Union[ImportContactResult, _Mapping]]] = ..., created_count: _Optional[int] = ..., changed_count: _Optional[int] = ..., unchanged_count: _Optional[int] = ..., refused_count: _Optional[int] = ...) -> None: ...

class ExportContactsRequest(_message.Message):
    __slots__ = ("filter",)
    FILTER_FIELD_NUMBER: _ClassVar[int]
    filter: ContactFilter
    def __init__(self, filter: _Optional[_Union[ContactFilter, _Mapping]] = ...) -> None: ...

class ExportContactsResponse(_message.Message):
    __slots__ = ("contacts", "total_size")
    CONTACTS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_SIZE_FIELD_NUMBER: _ClassVar[int]
    contacts: _containers.RepeatedCompositeFieldContainer[Contact]
    total_size: int
    def __init__(self, contacts: _Optional[_Iterable[_Union[Contact, _Mapping]]] = ..., total_size: _Optional[int] = ...) -> None: ...

class GetDispatchStatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetDispatchStatusResponse(_message.Message):
    __slots__ = ("level", "reason", "detail", "changed_at", "sends", "bounce_rate", "complaint_rate", "window_start", "judged", "bounces", "complaints", "thresholds", "resumed_at", "resumed_by", "resume_reason")
    LEVEL_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    CHANGED_AT_FIELD_NUMBER: _ClassVar[int]
    SENDS_FIELD_NUMBER: _ClassVar[int]
    BOUNCE_RATE_FIELD_NUMBER: _ClassVar[int]
    COMPLAINT_RATE_FIELD_NUMBER: _ClassVar[int]
    WINDOW_START_FIELD_NUMBER: _ClassVar[int]
    JUDGED_FIELD_NUMBER: _ClassVar[int]
    BOUNCES_FIELD_NUMBER: _ClassVar[int]
    COMPLAINTS_FIELD_NUMBER: _ClassVar[int]
    THRESHOLDS_FIELD_NUMBER: _ClassVar[int]
    RESUMED_AT_FIELD_NUMBER: _ClassVar[int]
    RESUMED_BY_FIELD_NUMBER: _ClassVar[int]
    RESUME_REASON_FIELD_NUMBER: _ClassVar[int]
    level: DispatchLevel
    reason: str
    detail: str
    changed_at: _timestamp_pb2.Timestamp
    sends: int
    bounce_rate: float
    complaint_rate: float
    window_start: _timestamp_pb2.Timestamp
    judged: bool
    bounces: int
    complaints: int
    thresholds: DispatchThresholds
    resumed_at: _timestamp_pb2.Timestamp
    resumed_by: str
    resume_reason: str
    def __init__(self, level: _Optional[_Union[DispatchLevel, str]] = ..., reason: _Optional[str] = ..., detail: _Optional[str] = ..., changed_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., sends: _Optional[int] = ..., bounce_rate: _Optional[float] = ..., complaint_rate: _Optional[float] = ..., window_start: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., judged: _Optional[bool] = ..., bounces: _Optional[int] = ..., complaints: _Optional[int] = ..., thresholds: _Optional[_Union[DispatchThresholds, _Mapping]] = ..., resumed_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., resumed_by: _Optional[str] = ..., resume_reason: _Optional[str] = ...) -> None: ...

class DispatchThresholds(_message.Message):
    __slots__ = ("slow_bounce_rate", "slow_complaint_rate", "pause_bounce_rate", "pause_complaint_rate", "slow_fraction", "min_sends")
    SLOW_BOUNCE_RATE_FIELD_NUMBER: _ClassVar[int]
    SLOW_COMPLAINT_RATE_FIELD_NUMBER: _ClassVar[int]
    PAUSE_BOUNCE_RATE_FIELD_NUMBER: _ClassVar[int]
    PAUSE_COMPLAINT_RATE_FIELD_NUMBER: _ClassVar[int]
    SLOW_FRACTION_FIELD_NUMBER: _ClassVar[int]
    MIN_SENDS_FIELD_NUMBER: _ClassVar[int]
    slow_bounce_rate: float
    slow_complaint_rate: float
    pause_bounce_rate: float
    pause_complaint_rate: float
    slow_fraction: float
    min_sends: int
    def __init__(self, slow_bounce_rate: _Optional[float] = ..., slow_complaint_rate: _Optional[float] = ..., pause_bounce_rate: _Optional[float] = ..., pause_complaint_rate: _Optional[float] = ..., slow_fraction: _Optional[float] = ..., min_sends: _Optional[int] = ...) -> None: ...

class ResumeDispatchRequest(_message.Message):
    __slots__ = ("reason",)
    REASON_FIELD_NUMBER: _ClassVar[int]
    reason: str
    def __init__(self, reason: _Optional[str] = ...) -> None: ...

class ResumeDispatchResponse(_message.Message):
    __slots__ = ("previous_level", "previous_reason", "previous_detail")
    PREVIOUS_LEVEL_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_REASON_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_DETAIL_FIELD_NUMBER: _ClassVar[int]
    previous_level: DispatchLevel
    previous_reason: str
    previous_detail: str
    def __init__(self, previous_level: _Optional[_Union[DispatchLevel, str]] = ..., previous_reason: _Optional[str] = ..., previous_detail: _Optional[str] = ...) -> None: ...

class ListTenantsRequest(_message.Message):
    __slots__ = ("page_size", "page_token")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListTenantsResponse(_message.Message):
    __slots__ = ("tenants", "next_page_token")
    TENANTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    tenants: _containers.RepeatedCompositeFieldContainer[Tenant]
    next_page_token: str
    def __init__(self, tenants: _Optional[_Iterable[_Union[Tenant, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class Tenant(_message.Message):
    __slots__ = ("name", "level", "reason", "detail", "changed_at", "sends", "bounces", "complaints", "bounce_rate", "complaint_rate", "judged", "queued", "held", "resumed_at", "resumed_by", "resume_reason", "ses_sending_status", "ses_status_cause", "ses_read_at")
    NAME_FIELD_NUMBER: _ClassVar[int]
    LEVEL_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    CHANGED_AT_FIELD_NUMBER: _ClassVar[int]
    SENDS_FIELD_NUMBER: _ClassVar[int]
    BOUNCES_FIELD_NUMBER: _ClassVar[int]
    COMPLAINTS_FIELD_NUMBER: _ClassVar[int]
    BOUNCE_RATE_FIELD_NUMBER: _ClassVar[int]
    COMPLAINT_RATE_FIELD_NUMBER: _ClassVar[int]
    JUDGED_FIELD_NUMBER: _ClassVar[int]
    QUEUED_FIELD_NUMBER: _ClassVar[int]
    HELD_FIELD_NUMBER: _ClassVar[int]
    RESUMED_AT_FIELD_NUMBER: _ClassVar[int]
    RESUMED_BY_FIELD_NUMBER: _ClassVar[int]
    RESUME_REASON_FIELD_NUMBER: _ClassVar[int]
    SES_SENDING_STATUS_FIELD_NUMBER: _ClassVar[int]
    SES_STATUS_CAUSE_FIELD_NUMBER: _ClassVar[int]
    SES_READ_AT_FIELD_NUMBER: _ClassVar[int]
    name: str
    level: DispatchLevel
    reason: str
    detail: str
    changed_at: _timestamp_pb2.Timestamp
    sends: int
    bounces: int
    complaints: int
    bounce_rate: float
    complaint_rate: float
    judged: bool
    queued: int
    held: int
    resumed_at: _timestamp_pb2.Timestamp
    resumed_by: str
    resume_reason: str
    ses_sending_status: str
    ses_status_cause: str
    ses_read_at: _timestamp_pb2.Timestamp
    def __init__(self, name: _Optional[str] = ..., level: _Optional[_Union[DispatchLevel, str]] = ..., reason: _Optional[str] = ..., detail: _Optional[str] = ..., changed_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., sends: _Optional[int] = ..., bounces: _Optional[int] = ..., complaints: _Optional[int] = ..., bounce_rate: _Optional[float] = ..., complaint_rate: _Optional[float] = ..., judged: _Optional[bool] = ..., queued: _Optional[int] = ..., held: _Optional[int] = ..., resumed_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., resumed_by: _Optional[str] = ..., resume_reason: _Optional[str] = ..., ses_sending_status: _Optional[str] = ..., ses_status_cause: _Optional[str] = ..., ses_read_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ResumeTenantRequest(_message.Message):
    __slots__ = ("tenant", "reason")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    reason: str
    def __init__(self, tenant: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class ResumeTenantResponse(_message.Message):
    __slots__ = ("previous_level", "previous_reason", "previous_detail")
    PREVIOUS_LEVEL_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_REASON_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_DETAIL_FIELD_NUMBER: _ClassVar[int]
    previous_level: DispatchLevel
    previous_reason: str
    previous_detail: str
    def __init__(self, previous_level: _Optional[_Union[DispatchLevel, str]] = ..., previous_reason: _Optional[str] = ..., previous_detail: _Optional[str] = ...) -> None: ...

class GetQueueStatusRequest(_message.Message):
    __slots__ = ("tenant_count",)
    TENANT_COUNT_FIELD_NUMBER: _ClassVar[int]
    tenant_count: int
    def __init__(self, tenant_count: _Optional[int] = ...) -> None: ...

class GetQueueStatusResponse(_message.Message):
    __slots__ = ("priorities", "callers", "tenants")
    PRIORITIES_FIELD_NUMBER: _ClassVar[int]
    CALLERS_FIELD_NUMBER: _ClassVar[int]
    TENANTS_FIELD_NUMBER: _ClassVar[int]
    priorities: _containers.RepeatedCompositeFieldContainer[QueueDepth]
    callers: _containers.RepeatedCompositeFieldContainer[QueueDepth]
    tenants: _containers.RepeatedCompositeFieldContainer[QueueDepth]
    def __init__(self, priorities: _Optional[_Iterable[_Union[QueueDepth, _Mapping]]] = ..., callers: _Optional[_Iterable[_Union[QueueDepth, _Mapping]]] = ..., tenants: _Optional[_Iterable[_Union[QueueDepth, _Mapping]]] = ...) -> None: ...

class QueueDepth(_message.Message):
    __slots__ = ("name", "queued", "held", "oldest")
    NAME_FIELD_NUMBER: _ClassVar[int]
    QUEUED_FIELD_NUMBER: _ClassVar[int]
    HELD_FIELD_NUMBER: _ClassVar[int]
    OLDEST_FIELD_NUMBER: _ClassVar[int]
    name: str
    queued: int
    held: int
    oldest: _timestamp_pb2.Timestamp
    def __init__(self, name: _Optional[str] = ..., queued: _Optional[int] = ..., held: _Optional[int] = ..., oldest: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...
