"""The contract: committed generated code matches protos/, and it imports from an installed package too."""

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from gateway.api.__main__ import generate
from gateway.api.mailgateway.v1 import mail_gateway_pb2 as pb

ROOT = Path(__file__).resolve().parents[1]
GENERATED = ROOT / "gateway" / "api" / "mailgateway"


def test_committed_generated_code_matches_the_proto(tmp_path):
    generate(tmp_path)

    fresh = {p.relative_to(tmp_path / "gateway/api/mailgateway"): p.read_bytes() for p in sources(tmp_path)}
    committed = {p.relative_to(GENERATED): p.read_bytes() for p in sources(GENERATED)}
    assert fresh.keys() == committed.keys()
    stale = [str(name) for name in fresh if fresh[name] != committed[name]]
    assert not stale, f"run `make protos`: {stale} differ from protos/"


def sources(root: Path) -> list[Path]:
    """The generated .py and .pyi files under `root`; not the bytecode Python caches beside them."""
    return [path for path in root.rglob("*.py*") if "__pycache__" not in path.parts]


def test_contract_names_are_the_documented_ones():
    service = pb.DESCRIPTOR.services_by_name["MailGatewayService"]
    assert service.full_name == "mailgateway.v1.MailGatewayService"
    assert set(service.methods_by_name) >= {"SendEmail", "GetContactStatus"}
    assert list(pb.ContactStatus.keys()) == [
        "CONTACT_STATUS_UNSPECIFIED",
        "CONTACT_STATUS_ACTIVE",
        "CONTACT_STATUS_UNSUBSCRIBED",
        "CONTACT_STATUS_BOUNCED",
        "CONTACT_STATUS_COMPLAINED",
    ]
    assert [f.name for f in pb.GetContactStatusRequest.DESCRIPTOR.oneofs_by_name["contact"].fields] == [
        "email",
        "contact_id",
    ]


@pytest.mark.slow
def test_generated_code_imports_from_an_installed_wheel(tmp_path):
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", tmp_path, ROOT],
        check=True,
        cwd=tmp_path,
    )
    [wheel] = tmp_path.glob("mail_gateway-*.whl")
    assert "gateway/api/mailgateway/v1/mail_gateway_pb2_grpc.py" in zipfile.ZipFile(wheel).namelist()
    assert "feedback_http/templates/confirm.html" in zipfile.ZipFile(wheel).namelist()  # the unsubscribe pages
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", target, wheel], check=True)
    probe = (
        "import sys; sys.path.insert(0, sys.argv[1]);"
        "from gateway.api.mailgateway.v1 import mail_gateway_pb2_grpc as g;"
        "import gateway; assert gateway.__file__.startswith(sys.argv[1]), gateway.__file__;"
        "print(g.MailGatewayServiceStub.__name__)"
    )
    # -I: the checkout is not on the path, so only the installed copy can answer.
    out = subprocess.run([sys.executable, "-I", "-c", probe, target], capture_output=True, text=True, cwd=tmp_path)
    assert out.stdout.strip() == "MailGatewayServiceStub", out.stderr
