#!/usr/bin/env bash
# Creates the ports6 converters' venv (caffe2onnx, onnx2tf, onnxsim, onnxruntime, onnx) from the package index, pinned
# by requirements-converters.txt next to this script (every resolved package by constraints-converters.txt).
# Idempotent: a venv whose stamp (the hash of both files) matches is kept.
#   usage: tests/ports6/install_converters.sh [VENV]     (default: $PORTS6_CONVERTERS_VENV or /work/venvs/corpus20)
# Exit 0 when the venv runs all four converters; otherwise exit 1 with one line saying why.
set -u
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="${1:-${PORTS6_CONVERTERS_VENV:-/work/venvs/corpus20}}"
req="$here/requirements-converters.txt"
cons="$here/constraints-converters.txt"
py="${PORTS6_PYTHON:-python3}"
fail() { echo "install_converters.sh: $*" >&2; exit 1; }

[ -f "$req" ] && [ -f "$cons" ] || fail "missing $req or $cons"
stamp="$(cat "$req" "$cons" | sha256sum | cut -c1-16)"
if [ -f "$venv/.ports6-stamp" ] && [ "$(cat "$venv/.ports6-stamp")" = "$stamp" ]; then
    echo "install_converters.sh: $venv is up to date ($stamp)"; exit 0
fi
command -v "$py" >/dev/null || fail "no $py on PATH"
"$py" -c 'import sys; sys.exit(0 if sys.version_info[:2] >= (3, 10) else 1)' \
    || fail "$py is older than 3.10 (onnx2tf 1.29 needs >= 3.10.12)"
if [ -e "$venv" ] && [ ! -f "$venv/pyvenv.cfg" ] && [ -n "$(ls -A "$venv" 2>/dev/null)" ]; then
    fail "$venv exists and is not a venv: not replacing it"
fi
rm -rf "$venv"
"$py" -m venv "$venv" || fail "could not create a venv at $venv"
pip=("$venv/bin/python" -m pip install --disable-pip-version-check --no-input -q -c "$cons")
deps="$(mktemp)"; nodeps="$(mktemp)"; trap 'rm -f "$deps" "$nodeps"' EXIT
grep -v '^\s*#' "$req" | grep -v NODEPS | sed 's/#.*//; /^\s*$/d' >"$deps"
grep NODEPS "$req" | sed 's/#.*//; s/\s*$//' >"$nodeps"
"${pip[@]}" -r "$deps" || fail "pip could not install the pinned dependencies (see above)"
"${pip[@]}" --no-deps -r "$nodeps" || fail "pip could not install onnx2tf / caffe2onnx (see above)"
PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION=python "$venv/bin/python" -c 'import caffe2onnx.src.caffe2onnx' \
    || fail "caffe2onnx does not import in $venv"
"$venv/bin/python" -c 'import onnx2tf, onnxruntime, onnx, onnxsim' || fail "onnx2tf does not import in $venv"
"$venv/bin/onnxsim" -h >/dev/null 2>&1 || fail "the onnxsim command does not run in $venv"
echo "$stamp" >"$venv/.ports6-stamp"
echo "install_converters.sh: converters installed in $venv"
