"""Reading rich gRPC errors the way a client in any language does (google.rpc.Status details)."""

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status


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
