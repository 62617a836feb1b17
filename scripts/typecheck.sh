#!/bin/sh
# mypy over the packages under their installed names (rvkvm.emulator, ...).
# The folders sit at the top of the repository and are mapped under `rvkvm`
# by package-dir, which mypy cannot follow through an editable install; so
# build a tree of links with the installed layout and check that.
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
TREE="$ROOT/build/typecheck"
rm -rf "$TREE" && mkdir -p "$TREE/rvkvm"
ln -s "$ROOT/pkg/rvkvm/__init__.py" "$TREE/rvkvm/__init__.py"
ln -s "$ROOT/pkg/rvkvm/v1" "$TREE/rvkvm/v1"
for p in emulator server client uapi; do ln -s "$ROOT/$p" "$TREE/rvkvm/$p"; done
cd "$ROOT"
PYTHON=${PYTHON:-python3}
exec "$PYTHON" -m mypy "$@" "$TREE/rvkvm/emulator" "$TREE/rvkvm/server" "$TREE/rvkvm/client" "$TREE/rvkvm/uapi"
