"""Debian's riscv64 kernel and busybox for the boot tests: from the cache,
fetched when missing. Where the package registry cannot be reached the test
is skipped with the reason, unless RVKVM_REQUIRE_BOOT=1 (CI), which makes
it a failure."""

from __future__ import annotations

import os

import pytest

from rvkvm.client.debian import DebianFiles, Fetcher, FetchError


def debian_files() -> DebianFiles:
    try:
        return Fetcher().ensure()
    except FetchError as err:
        if os.environ.get("RVKVM_REQUIRE_BOOT") == "1":
            pytest.fail(f"RVKVM_REQUIRE_BOOT=1 but no Debian kernel: {err}")
        pytest.skip(f"no Debian kernel: {err}")
