#!/bin/sh
# Regenerate the Python code for the gRPC contract in proto/ into
# pkg/rvkvm/v1 (the package rvkvm.v1, committed; tests/grpc/test_generated.py checks that running
# this again changes nothing).
#   scripts/gen_proto.sh [OUT_DIR]     default OUT_DIR: pkg
# errors.proto imports google/rpc/*.proto from third_party/googleapis; the
# generated code imports those modules from googleapis-common-protos.
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=${1:-$ROOT/pkg}
PYTHON=${PYTHON:-python3}
mkdir -p "$OUT/rvkvm/v1"
"$PYTHON" -m grpc_tools.protoc -I "$ROOT/proto" -I "$ROOT/third_party/googleapis" \
    --python_out="$OUT" --pyi_out="$OUT" --grpc_python_out="$OUT" \
    "$ROOT/proto/rvkvm/v1/kvm.proto" "$ROOT/proto/rvkvm/v1/errors.proto"
# protoc's imports (`from rvkvm.v1 import ...`) are the installed names as they are.
[ -f "$OUT/rvkvm/v1/__init__.py" ] || : > "$OUT/rvkvm/v1/__init__.py"
