"""The gRPC servicer of MailGatewayService: requests into domain calls, results into responses; no business logic."""

from collections.abc import Callable, Iterator

import grpc

from gateway.api.mailgateway.v1 import mail_gateway_pb2 as pb
from gateway.api.mailgateway.v1 import mail_gateway_pb2_grpc as pb_grpc
from gateway.core import errors
from gateway.core.addresses import InvalidAddress, email_key
from gateway.core.ids import is_contact_id, is_tenant, is_token
from gateway.core.states import Priority
from gateway.events.feed import EventFeed
from gateway.events.records import EVENT_TYPE_FROM_PROTO, PROTO_PRIORITY, PROTO_STATE, event_response
from gateway.events.watch import Watchers, position_of, watch
from gateway.rpc.auth import Authenticator
from gateway.rpc.status import rpc, rpc_watch
from gateway.sending.accept import accept
from gateway.sending.admission import OPEN, Admission
from gateway.sending.attachments import LARGE_MESSAGE_BUDGET, Attachment, LargeMessages
from gateway.sending.compose import unsubscribe_url
from gateway.sending.outgoing import outgoing_email
from gateway.store import contacts, queue, settling
from gateway.store.models import ContactStatus, MessageState

PROTO_STATUS = {status: pb.ContactStatus.Value(f"CONTACT_STATUS_{status.name}") for status in ContactStatus}
PRIORITY_FROM_PROTO = {number: priority for priority, number in PROTO_PRIORITY.items()} | {
    pb.PRIORITY_UNSPECIFIED: Priority.TRANSACTIONAL
}


class MailGatewayServicer(pb_grpc.MailGatewayServiceServicer):
    """MailGatewayService; `on_accepted` tells this process's dispatcher that a message is waiting."""

    def __init__(
        self,
        default_from: str,
        authenticator: Authenticator,
        on_accepted: Callable[[], None],
        *,
        public_base_url: str,
        admission: Admission = OPEN,
        feed: EventFeed | None = None,
        watchers: Watchers | None = None,
        max_message_bytes: int = 10 * 1024 * 1024,
        large: LargeMessages | None = None,
    ):
        self._max_message_bytes = max_message_bytes
        self._large = large or LargeMessages(LARGE_MESSAGE_BUDGET)  # accepting's own: sending has another
        self._feed = feed
        self._watchers = watchers or Watchers(per_caller=16, total=64)
        self._admission = admission
        self._default_from = default_from
        self._public_base_url = public_base_url
        self._authenticator = authenticator
        self._on_accepted = on_accepted

    @rpc
    def SendEmail(
        self, request: pb.SendEmailRequest, context: grpc.ServicerContext, caller: str
    ) -> pb.SendEmailResponse:
        # A request's files are copied out of it and into the database: a large one waits for its share.
        with self._large.hold(request.ByteSize() if request.attachments else 0):
            return self._send(request, caller)

    def _send(self, request: pb.SendEmailRequest, caller: str) -> pb.SendEmailResponse:
        email = outgoing_email(
            to=request.to,
            subject=request.subject,
            text_body=request.text_body,
            html_body=request.html_body,
            from_address=request.from_address,
            reply_to=request.reply_to,
            tags=dict(request.tags),
            default_from=self._default_from,
            request_id=request.request_id,
            priority=PRIORITY_FROM_PROTO.get(request.priority),  # None: a number the enum does not have
            tenant=request.tenant,
            send_at=request.send_at.seconds + request.send_at.nanos / 1e9 if request.HasField("send_at") else None,
            attachments=[
                Attachment(item.filename, item.content_type, item.content, item.content_id)
                for item in request.attachments
            ],
            max_bytes=self._max_message_bytes,
        )
        accepted = accept(email, request_id=request.request_id, caller=caller, admission=self._admission)
        self._on_accepted()
        return pb.SendEmailResponse(
            message_id=accepted.message_id,
            contact_id=accepted.contact_id,
            unsubscribe_url=unsubscribe_url(self._public_base_url, accepted.contact_id),  # the link the mail carries
        )

    @rpc
    def GetMessage(
        self, request: pb.GetMessageRequest, context: grpc.ServicerContext, caller: str
    ) -> pb.GetMessageResponse:
        if not is_token(request.message_id):
            raise errors.InvalidRequest({"message_id": "not a message id (as SendEmail returns it)"})
        message = queue.for_caller(request.message_id, caller)
        if message is None:
            raise errors.MessageNotFound("you sent no message with that id", messageId=request.message_id)
        response = pb.GetMessageResponse(
            message_id=message.message_id,
            contact_id=message.contact.contact_id,
            state=PROTO_STATE[message.state],
            ses_message_id=message.ses_message_id or "",
            attempts=message.attempts,
            priority=PROTO_PRIORITY[Priority(message.priority)],
            tenant=message.tenant,
        )
        if message.sent_at:
            response.sent_at.FromDatetime(message.sent_at)
        if message.send_at:
            response.send_at.FromDatetime(message.send_at)
        if message.error_reason:
            response.last_error.reason = message.error_reason
            response.last_error.ses_error_code = message.error_code
            response.last_error.description = message.error_detail
        response.created_at.FromDatetime(message.created_at)
        response.updated_at.FromDatetime(message.updated_at)
        for event in queue.events_of(message):
            response.events.add(type=event.event_type).time.FromDatetime(event.received_at)
        return response

    @rpc
    def CancelMessage(
        self, request: pb.CancelMessageRequest, context: grpc.ServicerContext, caller: str
    ) -> pb.CancelMessageResponse:
        if not is_token(request.message_id):
            raise errors.InvalidRequest({"message_id": "not a message id (as SendEmail returns it)"})
        state = settling.cancel(request.message_id, caller)
        if state is None:
            raise errors.MessageNotFound("you sent no message with that id", messageId=request.message_id)
        if state is not MessageState.CANCELLED:
            shown = pb.MessageState.Name(PROTO_STATE[state])
            raise errors.MessageNotCancellable(
                f"the message is {shown.removeprefix('MESSAGE_STATE_').lower()}: only a queued one can be cancelled",
                messageId=request.message_id,
                state=shown,
            )
        return pb.CancelMessageResponse(message_id=request.message_id, state=PROTO_STATE[state])

    @rpc
    def GetContactStatus(
        self, request: pb.GetContactStatusRequest, context: grpc.ServicerContext, caller: str
    ) -> pb.GetContactStatusResponse:
        contact = contacts.find_contact(**requested_contact(request))
        if contact is None:
            raise errors.ContactNotFound("no contact has that address or id")
        response = pb.GetContactStatusResponse(
            contact_id=contact.contact_id,
            email=contact.email,
            status=PROTO_STATUS[contact.status],
            reason=contact.reason,
        )
        response.updated_at.FromDatetime(contact.updated_at)
        return response

    @rpc_watch
    def WatchEvents(
        self, request: pb.WatchEventsRequest, context: grpc.ServicerContext, caller: str
    ) -> Iterator[pb.WatchEventsResponse]:
        types = []
        for number in request.types:
            if number not in EVENT_TYPE_FROM_PROTO:
                raise errors.InvalidRequest({"types": f"{number} is not an event type"})
            types.append(EVENT_TYPE_FROM_PROTO[number])
        if request.tenant and not is_tenant(request.tenant):
            raise errors.InvalidRequest({"tenant": "1-64 ASCII letters, digits, '_' or '-'"})
        if request.cursor:
            position_of(request.cursor)  # a bad cursor is refused before it takes a place
        if self._feed is None:
            raise errors.GatewayError("this gateway keeps no event feed")
        with self._watchers.one(caller):
            items = watch(
                caller, request.cursor, self._feed, types=tuple(types), tenant=request.tenant, active=context.is_active
            )
            for item in items:
                yield event_response(item)


def requested_contact(request) -> dict[str, str]:
    """The contact a request names in its `contact` oneof, as find_contact's keyword: the normalised email or the
    contact id."""
    which = request.WhichOneof("contact")
    if which == "email":
        try:
            return {"email": email_key(request.email)}
        except InvalidAddress as exc:
            raise errors.InvalidRequest({"email": str(exc)}) from None
    if which == "contact_id":
        if not is_contact_id(request.contact_id):
            raise errors.InvalidRequest({"contact_id": "not a contact id (22 URL-safe characters)"})
        return {"contact_id": request.contact_id}
    raise errors.InvalidRequest({"contact": "set either email or contact_id"})
