"""A record of the event log as the API shapes it: a WatchEvents response, and the same in proto JSON names for a
webhook's body. One conversion for both, so a stream and a webhook never disagree on a field."""

from google.protobuf import json_format

from gateway.api.mailgateway.v1 import mail_gateway_pb2 as pb
from gateway.core.states import EventType, MessageState, Priority
from gateway.events.watch import KeepAlive, cursor_of
from gateway.store.models import EventRecord

PROTO_STATE = {state: pb.MessageState.Value(f"MESSAGE_STATE_{state.shown.name}") for state in MessageState}
PROTO_PRIORITY = {priority: pb.Priority.Value(f"PRIORITY_{priority.name}") for priority in Priority}
PROTO_EVENT_TYPE = {kind: pb.EventType.Value(f"EVENT_TYPE_{kind.name}") for kind in EventType}
EVENT_TYPE_FROM_PROTO = {number: kind for kind, number in PROTO_EVENT_TYPE.items()}
PROTO_STATE_NAMED = {state.value: number for state, number in PROTO_STATE.items()}


def event_response(item: EventRecord | KeepAlive) -> pb.WatchEventsResponse:
    """A record as WatchEvents sends it; a keep-alive carries its cursor only."""
    if isinstance(item, KeepAlive):
        return pb.WatchEventsResponse(cursor=cursor_of(item.position))
    response = pb.WatchEventsResponse(
        cursor=cursor_of(item.position),
        type=PROTO_EVENT_TYPE[EventType(item.type)],
        message_id=item.message_id,
        request_id=item.request_id,
        contact_id=item.contact_id,
        tenant=item.tenant,
        state=PROTO_STATE_NAMED.get(item.state, 0),
        previous_state=PROTO_STATE_NAMED.get(item.previous_state, 0),
        bounce_type=item.bounce_type,
        bounce_subtype=item.bounce_subtype,
        diagnostic=item.diagnostic,
    )
    if item.priority is not None:
        response.priority = PROTO_PRIORITY[Priority(item.priority)]
    response.time.FromDatetime(item.time)
    return response


def event_json(record: EventRecord) -> dict:
    """A record in proto JSON names, every field present (an empty string, or the enum's UNSPECIFIED, where it has
    none), as a webhook's body carries it: {"cursor": …, "type": "EVENT_TYPE_BOUNCED", "messageId": …, …}."""
    return json_format.MessageToDict(event_response(record), always_print_fields_with_no_presence=True)
