"""The repository's layout rules, checked on the source:

- the import directions of DESIGN.md (``client -> proto <- server ->
  emulator``; the emulator, the KVM model and the uapi facts free of gRPC);
- every third-party module the code and the tests import comes from a
  dependency that pyproject.toml declares (so a fresh machine has it);
- the wheel installs one top-level package, ``rvkvm``, with the .proto files.
"""

from __future__ import annotations

import ast
import importlib.metadata as md
import importlib.util
import re
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Dict, Iterator, List, Set, Tuple

import pytest
import tomllib

ROOT = Path(__file__).resolve().parents[1]
# folder -> the package it installs as
PACKAGES = {"emulator": "rvkvm.emulator", "server": "rvkvm.server", "client": "rvkvm.client",
            "uapi": "rvkvm.uapi", "pkg/rvkvm": "rvkvm"}
LOCAL_TOP = {"rvkvm", "tests", "bench"}


def _modules(folder: str) -> Iterator[Tuple[Path, str]]:
    """(file, absolute module name it imports) for every import under folder."""
    base = ROOT / folder
    for path in sorted(base.rglob("*.py")):
        if path.name.endswith(("_pb2.py", "_pb2_grpc.py")):
            continue
        rel = path.relative_to(ROOT)
        package = PACKAGES.get(folder, folder.replace("/", "."))
        parts = list(path.relative_to(base).with_suffix("").parts)
        here = [package.split(".")[0]] + package.split(".")[1:] + parts[:-1]
        if parts[-1] == "__init__":
            parts = parts[:-1]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    yield rel, alias.name
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    anchor = here[: len(here) - node.level + 1]
                    yield rel, ".".join(anchor + ([node.module] if node.module else []))
                elif node.module:
                    yield rel, node.module


def _third_party(name: str) -> bool:
    top = name.split(".")[0]
    # __pypy__ and pypyjit: PyPy's built-in modules (the emulator's PyPy paths)
    return (top not in sys.stdlib_module_names and top not in LOCAL_TOP
            and top not in ("__pypy__", "pypyjit"))


def _violations(folder: str, allowed: Tuple[str, ...], forbidden: Tuple[str, ...]) -> List[str]:
    bad = []
    for path, name in _modules(folder):
        if name.startswith(forbidden) or (
                _third_party(name) and not name.startswith(allowed)):
            bad.append(f"{path}: {name}")
    return bad


RULES = {
    # folder: (third-party modules it may import, modules it must not import)
    "emulator": (("elftools",), ("rvkvm.server", "rvkvm.client", "rvkvm.v1", "rvkvm.uapi")),
    "uapi": ((), ("rvkvm.server", "rvkvm.client", "rvkvm.emulator", "rvkvm.v1")),
    "server/kvm": ((), ("rvkvm.server.rpc", "rvkvm.client", "rvkvm.v1")),
    "server": (("grpc", "google", "structlog", "prometheus_client", "grpc_health",
                "grpc_reflection", "grpc_status"), ("rvkvm.client",)),
    "client": (("grpc", "google", "elftools"), ("rvkvm.server", "rvkvm.emulator")),
}


@pytest.mark.parametrize("folder", sorted(RULES))
def test_import_directions(folder: str) -> None:
    allowed, forbidden = RULES[folder]
    if folder == "server/kvm":
        bad = [f"{p}: {n}" for p, n in _modules("server")
               if str(p).startswith("server/kvm/") and (n.startswith(forbidden) or _third_party(n))]
    else:
        bad = _violations(folder, allowed, forbidden)
    assert not bad, "imports against the layout rules:\n" + "\n".join(bad)


def test_emulator_imports_itself_only_relatively() -> None:
    # pypy3 runs it as the top-level package `emulator` (emulator.bench's
    # fresh processes), so it must not name itself as rvkvm.emulator.
    src = [str(p.relative_to(ROOT)) for p in (ROOT / "emulator").rglob("*.py")
           if re.search(r"^\s*(from|import) (rvkvm\.)?emulator\b", p.read_text(), re.M)]
    assert not src, f"absolute self-imports in {src}"


def test_the_client_loads_no_server_code() -> None:
    code = ("import sys, rvkvm.client, rvkvm.client.cli, rvkvm.client.vmm; "
            "bad = [m for m in sys.modules if m.startswith(('rvkvm.server', 'rvkvm.emulator'))]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def _declared() -> Set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = project["dependencies"] + sum(project["optional-dependencies"].values(), [])
    return {re.split(r"[ <>=!~\[;]", r, maxsplit=1)[0].lower().replace("_", "-") for r in reqs}


def _owner(module: str) -> Set[str]:
    """The distributions whose files hold ``module`` (the module itself, not
    only its top-level name: google.rpc and google.protobuf differ)."""
    spec = importlib.util.find_spec(module)
    if spec is None:
        return set()
    if spec.origin not in (None, "built-in", "frozen", "namespace"):
        places = [Path(spec.origin).resolve()]
    else:  # a namespace package (google.rpc): what lies in its folders
        places = [Path(p).resolve() for p in spec.submodule_search_locations or []]
    owners = set()
    top = module.split(".")[0]
    for dist in md.packages_distributions().get(top, []):
        for f in md.distribution(dist).files or []:
            if str(f).startswith(top):
                path = Path(f.locate()).resolve()
                if any(path == place or place in path.parents for place in places):
                    owners.add(dist.lower().replace("_", "-"))
                    break
    return owners


def test_every_third_party_import_is_declared() -> None:
    declared = _declared()
    seen: Dict[str, List[str]] = {}
    for folder in ("emulator", "server", "client", "uapi", "pkg/rvkvm", "tests", "bench"):
        for path, name in _modules(folder):
            if _third_party(name):
                seen.setdefault(name, []).append(str(path))
    missing = []
    for name, paths in sorted(seen.items()):
        try:
            owners = _owner(name)
        except ModuleNotFoundError:
            owners = _owner(name.rpartition(".")[0]) if "." in name else set()
        if not owners & declared:
            missing.append(f"{name} ({', '.join(sorted(owners)) or 'not installed'}): {paths[0]}")
    assert not missing, "imported, but no declared dependency provides it:\n" + "\n".join(missing)


def test_wheel_installs_one_top_level_package(tmp_path: Path) -> None:
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(tmp_path), str(ROOT)], check=True, capture_output=True)
    (wheel,) = tmp_path.glob("rvkvm-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names if not n.startswith("rvkvm-")}
    assert tops == {"rvkvm"}
    for needed in ("rvkvm/proto/rvkvm/v1/kvm.proto", "rvkvm/v1/kvm_pb2.py",
                   "rvkvm/emulator/hart.py", "rvkvm/server/kvm/vcpu.py", "rvkvm/client/vmm.py",
                   "rvkvm/uapi/onereg.py", "rvkvm/client/guests/hello_sbi.elf"):
        assert needed in names
