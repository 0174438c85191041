"""Bootstrap against an endpoint that lacks operations (plain moto, without the SES v2 stand-in): the missing call is
named in one line, never printed."""

import os
import subprocess
import sys

import boto3
import pytest

from gateway.aws.bootstrap import CLIENT_CONFIG, LastAnswer, aws_errors
from gateway.aws.outcome import BootstrapError
from tests.processes import ROOT


def mailgw(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", *args], capture_output=True, text=True, env=env, cwd=ROOT, timeout=60
    )


# --- An endpoint that lacks an operation -------------------------------------------------------------------------


def test_bootstrap_against_plain_moto_names_the_missing_sesv2_operation_in_one_line(moto):
    # moto has CreateConfigurationSet but none of the event-destination calls: it answers them with an HTML 404.
    env = os.environ | {"AWS_ENDPOINT_URL": moto.url}

    done = mailgw("aws", "bootstrap", env=env)

    assert done.returncode == 1
    assert done.stderr == (
        f"mailgw: the AWS endpoint at {moto.url} does not implement sesv2 GetConfigurationSetEventDestinations "
        "(HTTP 404)\n"
    )
    assert "<html" not in (done.stdout + done.stderr).lower()
    assert "Traceback" not in done.stderr


def test_an_answer_that_does_not_parse_names_the_call_too(moto):
    # moto answers an SNS action it has not implemented with an HTML 500 page, which botocore cannot parse at all.
    last = LastAnswer()

    with pytest.raises(BootstrapError) as refused, aws_errors(last):
        sns = last.watch("sns", boto3.client("sns", region_name="us-east-1", config=CLIENT_CONFIG))
        sns.list_origination_numbers()

    assert str(refused.value) == (
        f"the AWS endpoint at {moto.url} answered sns ListOriginationNumbers with HTTP 500 and no AWS answer in it"
    )
