"""Regenerates the Python code for protos/ under gateway/api/ (or under the directory given)."""

import re
import sys
import tempfile
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parents[2]
PROTOS = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "protos").rglob("*.proto"))
# `import "mailgateway/v1/x.proto"` as buf and every other language read it.
OWN_IMPORT = re.compile(r'^(import\s+(?:public\s+|weak\s+)?")(mailgateway/)', re.MULTILINE)


def generate(out_dir: Path) -> None:
    # The protos are compiled as if they lived under gateway/api/, so the generated imports read
    # `from gateway.api.mailgateway.v1 import …` and work from the checkout and when installed. A proto importing
    # another of ours names it as buf does ("mailgateway/v1/…"): staged copies name it by that same path, so protoc
    # loads each file once, under one name.
    with tempfile.TemporaryDirectory() as staging:
        for proto in PROTOS:
            staged = Path(staging, "gateway/api", Path(proto).relative_to("protos"))
            staged.parent.mkdir(parents=True, exist_ok=True)
            staged.write_text(OWN_IMPORT.sub(r"\1gateway/api/\2", (ROOT / proto).read_text()))
        args = ["protoc", f"-I{staging}", f"-I{protoc_include()}"]
        args += [f"--python_out={out_dir}", f"--pyi_out={out_dir}", f"--grpc_python_out={out_dir}"]
        args += [str(Path("gateway/api") / Path(p).relative_to("protos")) for p in PROTOS]
        if protoc.main(args) != 0:
            raise SystemExit("protoc failed")


def protoc_include() -> str:
    import grpc_tools

    return str(Path(grpc_tools.__file__).parent / "_proto")


if __name__ == "__main__":
    generate(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT)
