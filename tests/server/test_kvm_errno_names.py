"""Errno names as Linux spells them, on both sides of the wire."""

from __future__ import annotations

import errno

import pytest

from rvkvm.client.errors import errno_name as client_name
from rvkvm.server.kvm.errors import ENOTSUPP
from rvkvm.server.kvm.errors import errno_name as server_name


@pytest.mark.parametrize("name_of", [server_name, client_name])
def test_kernel_spellings(name_of) -> None:
    assert name_of(errno.EOPNOTSUPP) == "EOPNOTSUPP"  # Python's table says ENOTSUP
    assert name_of(ENOTSUPP) == "ENOTSUPP"  # kernel-internal 524
    assert name_of(errno.ENOENT) == "ENOENT"
    assert name_of(errno.E2BIG) == "E2BIG"
    assert name_of(4095) == "E4095"
