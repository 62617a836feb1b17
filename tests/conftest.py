"""Servers that tests start as processes (``rvkvm run``'s embedded server,
``rvkvm-server``) run their vCPUs in-process unless a test asks for
workers: ``RVKVM_TEST_WORKERS=N`` gives them (and the in-process test
servers, tests/grpc/conftest.py) N worker processes, on
``RVKVM_TEST_WORKER_PYTHON`` if set."""

import os

os.environ["RVKVM_WORKERS"] = os.environ.get("RVKVM_TEST_WORKERS", "") or "0"
if os.environ.get("RVKVM_TEST_WORKER_PYTHON"):
    os.environ["RVKVM_WORKER_PYTHON"] = os.environ["RVKVM_TEST_WORKER_PYTHON"]
