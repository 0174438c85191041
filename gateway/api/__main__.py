"""Regenerates the Python code for protos/ under gateway/api/ (or under the directory given)."""

import sys
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parents[2]
PROTOS = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "protos").rglob("*.proto"))


def generate(out_dir: Path) -> None:
    # The virtual include path "gateway/api=protos" makes the generated imports read
    # `from gateway.api.mailgateway.v1 import …`, so they work from the checkout and when installed.
    args = ["protoc", f"-Igateway/api={ROOT / 'protos'}", f"-I{protoc_include()}"]
    args += [f"--python_out={out_dir}", f"--pyi_out={out_dir}", f"--grpc_python_out={out_dir}"]
    args += [str(Path("gateway/api") / Path(p).relative_to("protos")) for p in PROTOS]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")


def protoc_include() -> str:
    import grpc_tools

    return str(Path(grpc_tools.__file__).parent / "_proto")


if __name__ == "__main__":
    generate(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT)
