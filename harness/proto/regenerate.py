"""Regenerate ``caffe_pb2.py`` from ``caffe.proto`` (``python -m harness.proto.regenerate``).

Needs ``grpcio-tools`` (it bundles ``protoc``).  The generated module is committed.  protoc >= 5.26 writes a runtime
version check that refuses protobuf runtimes older than the generator; the harness supports protobuf >= 3.20 (the
first runtime with ``builder``), so the check is removed here.  ``tests/test_proto.py`` imports the module under the
installed runtime and the oldest supported one.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> int:
    from grpc_tools import protoc  # type: ignore[import-not-found]

    rc = protoc.main(["protoc", f"-I{HERE}", f"--python_out={HERE}", str(HERE / "caffe.proto")])
    if rc != 0:
        print(f"protoc failed with status {rc}", file=sys.stderr)
        return rc
    out = HERE / "caffe_pb2.py"
    text = out.read_text()
    text = re.sub(r"from google\.protobuf import runtime_version as _runtime_version\n", "", text)
    text = re.sub(r"_runtime_version\.ValidateProtobufRuntimeVersion\([^)]*\)\n", "", text, flags=re.S)
    out.write_text(text)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
