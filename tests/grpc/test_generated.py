"""The committed generated code is what scripts/gen_proto.sh makes of proto/."""

from __future__ import annotations

import filecmp
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_regenerating_changes_nothing(tmp_path):
    pytest.importorskip("grpc_tools")
    subprocess.run(["sh", os.path.join(ROOT, "scripts", "gen_proto.sh"), str(tmp_path)],
                   check=True, env={**os.environ, "PYTHON": sys.executable})
    committed = os.path.join(ROOT, "pkg", "rvkvm", "v1")
    fresh = tmp_path / "rvkvm" / "v1"
    names = sorted(n for n in os.listdir(fresh) if n.endswith((".py", ".pyi")))
    assert names == ["__init__.py", "errors_pb2.py", "errors_pb2.pyi", "errors_pb2_grpc.py",
                     "kvm_pb2.py", "kvm_pb2.pyi", "kvm_pb2_grpc.py"]
    match, mismatch, errors = filecmp.cmpfiles(committed, fresh, names, shallow=False)
    assert (mismatch, errors) == ([], []), "run scripts/gen_proto.sh and commit the result"


def test_client_does_not_import_the_server():
    code = ("import sys, client, client.cli, client.vmm; "
            "bad = [m for m in sys.modules if m == 'server' or m.startswith('server.')]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
