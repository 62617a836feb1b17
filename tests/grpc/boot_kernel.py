"""Debian's riscv64 kernel and busybox for the boot tests: from the cache,
fetched when missing. Where the package registry cannot be reached the test
is skipped with the reason, unless RVKVM_REQUIRE_KERNEL=1 (CI) or
RVKVM_REQUIRE_BOOT=1, which make it a failure."""

from __future__ import annotations

import os

import pytest

from rvkvm.client.debian import DebianFiles, Fetcher, FetchError


def debian_files() -> DebianFiles:
    try:
        return Fetcher().ensure()
    except FetchError as err:
        if "1" in (os.environ.get("RVKVM_REQUIRE_KERNEL"), os.environ.get("RVKVM_REQUIRE_BOOT")):
            pytest.fail(f"a Debian kernel is required here but could not be had: {err}")
        pytest.skip(f"no Debian kernel: {err}")
