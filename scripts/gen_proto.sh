#!/bin/sh
# Regenerate the Python code for the gRPC contract in proto/ into
# rvkvm_proto/ (committed; tests/grpc/test_generated.py checks that running
# this again changes nothing).
#   scripts/gen_proto.sh [OUT_DIR]     default OUT_DIR: rvkvm_proto
# errors.proto imports google/rpc/*.proto from third_party/googleapis; the
# generated code imports those modules from googleapis-common-protos.
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=${1:-$ROOT/rvkvm_proto}
PYTHON=${PYTHON:-python3}
mkdir -p "$OUT/rvkvm/v1"
"$PYTHON" -m grpc_tools.protoc -I "$ROOT/proto" -I "$ROOT/third_party/googleapis" \
    --python_out="$OUT" --pyi_out="$OUT" --grpc_python_out="$OUT" \
    "$ROOT/proto/rvkvm/v1/kvm.proto" "$ROOT/proto/rvkvm/v1/errors.proto"
# protoc writes imports relative to proto/; the modules live under rvkvm_proto.
sed -i 's/^from rvkvm\.v1 import/from rvkvm_proto.rvkvm.v1 import/' "$OUT"/rvkvm/v1/*_pb2*
for d in "$OUT" "$OUT/rvkvm" "$OUT/rvkvm/v1"; do
    [ -f "$d/__init__.py" ] || : > "$d/__init__.py"
done
