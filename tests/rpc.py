"""Calling the gateway as a client in any language does: rich errors (google.rpc.Status details), and following an
accepted message with GetMessage until it settles."""

import time

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from gateway.api.mailgateway.v1 import mail_gateway_pb2 as pb

IN_FLIGHT = (pb.MESSAGE_STATE_QUEUED, pb.MESSAGE_STATE_SENDING)


def rpc_failure(call, *args, **kwargs):
    """Make the call, which must fail; returns (code, message, {detail type name: [details]})."""
    with pytest.raises(grpc.RpcError) as caught:
        call(*args, **kwargs)
    err = caught.value
    status = rpc_status.from_call(err)
    details: dict[str, list] = {}
    for any_detail in status.details if status else []:
        for kind in (error_details_pb2.ErrorInfo, error_details_pb2.BadRequest, error_details_pb2.RetryInfo):
            detail = kind()
            if any_detail.Unpack(detail):
                details.setdefault(kind.__name__, []).append(detail)
    return err.code(), err.details(), details


def error_info(details: dict) -> error_details_pb2.ErrorInfo:
    """The one ErrorInfo every error must carry (AIP-193)."""
    infos = details.get("ErrorInfo", [])
    assert len(infos) == 1, f"expected exactly one ErrorInfo, got {infos}"
    assert infos[0].domain == "mailgateway"
    return infos[0]


def message(stub, message_id: str, **call) -> pb.GetMessageResponse:
    return stub.GetMessage(pb.GetMessageRequest(message_id=message_id), timeout=10, **call)


def settled(stub, message_id: str, *, timeout: float = 20.0, waiting=IN_FLIGHT, **call) -> pb.GetMessageResponse:
    """GetMessage once the message has left the `waiting` states (by default: no longer queued or sending)."""
    deadline = time.monotonic() + timeout
    while True:
        found = message(stub, message_id, **call)
        if found.state not in waiting or time.monotonic() > deadline:
            return found
        time.sleep(0.05)
