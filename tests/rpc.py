"""Calling the gateway as a client in any language does: rich errors (google.rpc.Status details), and following an
accepted message with GetMessage until it settles."""

import time

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from gateway.api.mailgateway.v1 import mail_gateway_pb2 as pb

IN_FLIGHT = (pb.MESSAGE_STATE_QUEUED, pb.MESSAGE_STATE_SENDING)
DETAIL_KINDS = (
    error_details_pb2.ErrorInfo,
    error_details_pb2.BadRequest,
    error_details_pb2.RetryInfo,
    error_details_pb2.QuotaFailure,
)


def rpc_failure(call, *args, **kwargs):
    """Make the call, which must fail; returns (code, message, {detail type name: [details]})."""
    with pytest.raises(grpc.RpcError) as caught:
        call(*args, **kwargs)
    err = caught.value
    status = rpc_status.from_call(err)
    details: dict[str, list] = {}
    for any_detail in status.details if status else []:
        for kind in DETAIL_KINDS:
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


def quiet_for(gateway, *loop_names: str, turns: int = 5, timeout: float = 20.0) -> None:
    """Wait until each named loop of `gateway` (core/loops.py) has done `turns` more steps: what would have happened
    by then (a retry, a resend, a probe) has happened. A test that checks that nothing more happens waits for this,
    not for the clock."""
    loops = {loop.name: loop for loop in gateway.loops}
    targets = {name: loops[name].turns + turns for name in loop_names}
    deadline = time.monotonic() + timeout
    while any(loops[name].turns < target for name, target in targets.items()):
        if time.monotonic() > deadline:
            raise AssertionError(f"the loops {loop_names} did not turn {turns} times in {timeout} s")
        time.sleep(0.01)
