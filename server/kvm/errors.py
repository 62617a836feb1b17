"""The one error type of the KVM model: an exception that carries a Linux errno."""

from __future__ import annotations

import errno as _errno
from typing import Optional

# Kernel-internal "not supported" (include/linux/errno.h); it is not in the
# errno module but leaks to userspace from KVM's FWFT ONE_REG paths.
ENOTSUPP = 524

# Names as Linux spells them where Python's table picks an alias
# (errno 95 is EOPNOTSUPP in the kernel, ENOTSUP in glibc's table).
_KERNEL_NAMES = {ENOTSUPP: "ENOTSUPP", _errno.EOPNOTSUPP: "EOPNOTSUPP"}


def errno_name(code: int) -> str:
    """Symbolic name of an errno value, e.g. ``ENOENT``."""
    return _KERNEL_NAMES.get(code) or _errno.errorcode.get(code) or f"E{code}"


class KvmError(Exception):
    """A failed KVM operation, as the ioctl would fail: ``-1`` with ``errno``.

    ``count`` is set where KVM also hands a number back on failure
    (KVM_GET_REG_LIST's E2BIG writes the needed register count);
    ``exit_seq`` where a Run refuses a completion for another exit (the
    sequence number of the exit the vCPU is stopped at).
    """

    def __init__(self, errno: int, message: str = "", *, count: Optional[int] = None,
                 exit_seq: Optional[int] = None) -> None:
        self.errno = errno
        self.message = message
        self.count = count
        self.exit_seq = exit_seq
        super().__init__(errno, message)

    @property
    def name(self) -> str:
        return errno_name(self.errno)

    def __str__(self) -> str:
        text = f"{self.name} ({self.errno})"
        return f"{text}: {self.message}" if self.message else text

    def __repr__(self) -> str:
        return f"KvmError({self.name}, {self.message!r})"
