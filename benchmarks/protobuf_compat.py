"""Does the generated ``harness/proto/caffe_pb2.py`` work on old protobuf runtimes?

The runtimes checked are the oldest with the ``builder`` API (3.20.3) and the oldest that TensorFlow, a runtime
dependency, accepts (6.31.1).  Each is installed once (``pip install --no-deps --target DIR/VERSION``: this step uses
the package index) into ``DIR`` (default ``.protobuf-sites`` at the repository root, or ``$CAFFE_HARNESS_PROTOBUF_SITES``);
then, for each, a fresh ``python -S`` with only that runtime and the repository on its path parses a Pooling layer
from text, round-trips it through the wire format and prints ``<protobuf version> <round_mode>`` (expected:
``VERSION 1``).  ``--offline`` skips the installation and checks only what is already in ``DIR``: that is what
``tests/test_proto.py`` runs, so the test suite itself never touches the network.

Usage: python benchmarks/protobuf_compat.py [--dir DIR] [--offline] [VERSION ...]
Exit status: 0 every runtime checked passed, 1 one failed, 2 one could not be installed (or is absent with --offline).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VERSIONS = ("3.20.3", "6.31.1")
DEFAULT_DIR = Path(os.environ.get("CAFFE_HARNESS_PROTOBUF_SITES") or ROOT / ".protobuf-sites")

_CHECK = (
    "import sys, google.protobuf as g; from google.protobuf import text_format;"
    "from harness.proto import caffe_pb2 as pb;"
    "n = pb.NetParameter(); text_format.Parse('layer { name: \"p\" type: \"Pooling\" pooling_param "
    "{ round_mode: FLOOR ceil_mode: false } }', n);"
    "m = pb.NetParameter.FromString(n.SerializeToString());"
    "print(g.__version__, m.layer[0].pooling_param.round_mode)"
)


def site_of(version: str, sites: Path = DEFAULT_DIR) -> Path:
    """Where protobuf ``version`` is (or gets) installed."""
    return sites / version


def is_present(version: str, sites: Path = DEFAULT_DIR) -> bool:
    return (site_of(version, sites) / "google" / "protobuf" / "__init__.py").is_file()


def install(version: str, sites: Path = DEFAULT_DIR) -> str | None:
    """Install protobuf ``version`` into its site folder (uses the package index); the error line, or None."""
    pip = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-compile", "--target",
         str(site_of(version, sites)), f"protobuf=={version}"],
        capture_output=True, text=True, timeout=240,
        env={**os.environ, "PIP_CONSTRAINT": "", "PIP_DISABLE_PIP_VERSION_CHECK": "1"},
    )
    return None if pip.returncode == 0 else (pip.stderr.strip().splitlines() or ["pip failed"])[-1]


def check(version: str, sites: Path = DEFAULT_DIR) -> tuple[bool, str]:
    """Run the round trip under the installed runtime: (passed, what it printed or the error)."""
    env = {**os.environ, "PYTHONPATH": f"{site_of(version, sites)}{os.pathsep}{ROOT}",
           "PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION": "python"}
    out = subprocess.run([sys.executable, "-S", "-c", _CHECK], capture_output=True, text=True, env=env, timeout=60)
    if out.returncode != 0:
        return False, out.stderr.strip()
    return out.stdout.split() == [version, "1"], out.stdout.strip()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("versions", nargs="*", default=list(VERSIONS), help=f"protobuf versions (default {VERSIONS})")
    ap.add_argument("--dir", type=Path, default=DEFAULT_DIR, help=f"install folder (default {DEFAULT_DIR})")
    ap.add_argument("--offline", action="store_true", help="check only runtimes already installed in --dir")
    args = ap.parse_args(argv)
    status = 0
    for v in args.versions:
        if not is_present(v, args.dir):
            err = f"not installed in {args.dir}" if args.offline else install(v, args.dir)
            if err is not None:
                print(f"protobuf {v}: cannot check: {err}")
                status = max(status, 2)
                continue
        ok, said = check(v, args.dir)
        print(f"protobuf {v}: {'ok' if ok else 'FAILED'}: {said}")
        status = max(status, 0 if ok else 1)
    return status


if __name__ == "__main__":
    raise SystemExit(main())
