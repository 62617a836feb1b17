#!/bin/sh
# `buf breaking`: the contract in proto/ may only grow. Compares the working
# tree's proto/ against proto/ of the commit before HEAD (on main: main's
# previous commit), with the FILE rules of buf.yaml: no field, message, enum
# value, RPC or file removed or renamed, no field number or type changed.
#   scripts/buf_breaking.sh [AGAINST_REF]      default AGAINST_REF: HEAD~1
# BUF=path/to/buf overrides the buf of clients/node (npm ci installs it).
# Exits 0 with a message when there is no such commit (first commit, or a
# shallow clone without history: fetch with --depth 2 or more).
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
BUF=${BUF:-$ROOT/clients/node/node_modules/.bin/buf}
REF=${1:-HEAD~1}
if [ ! -x "$BUF" ] && ! command -v "$BUF" >/dev/null 2>&1; then
    echo "buf_breaking: buf not found at $BUF (run: cd clients/node && npm ci)" >&2
    exit 2
fi
if ! AGAINST=$(git rev-parse --verify --quiet "$REF^{commit}"); then
    echo "buf_breaking: no commit $REF to compare with (first commit or shallow clone); nothing checked"
    exit 0
fi
if ! git cat-file -e "$AGAINST:proto" 2>/dev/null; then
    echo "buf_breaking: $REF ($AGAINST) has no proto/; nothing checked"
    exit 0
fi
# buf reads the git objects itself; a worktree's .git is a file, so name the
# common git directory.
GITDIR=$(cd "$(git rev-parse --git-common-dir)" && pwd)
# proto/ (the module in buf.yaml; buf finds third_party/googleapis, which
# errors.proto imports, through the workspace) against proto/ at AGAINST.
"$BUF" breaking proto --against "$GITDIR#ref=$AGAINST,subdir=proto"
echo "buf_breaking: proto/ is compatible with $REF ($AGAINST)"
