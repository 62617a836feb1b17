"""The client's one error type: a failed RPC with the kernel's errno."""

from __future__ import annotations

import errno as _errno
from typing import Optional

import grpc
from grpc_status import rpc_status

from rvkvm.v1 import kvm_pb2 as pb

ENOTSUPP = 524  # kernel-internal "not supported"; leaks from KVM's FWFT paths
# Linux's spelling where Python's table has an alias (95: ENOTSUP there).
_KERNEL_NAMES = {ENOTSUPP: "ENOTSUPP", _errno.EOPNOTSUPP: "EOPNOTSUPP"}


def errno_name(code: int) -> str:
    """Linux's name of an errno ("EINVAL", "ENOTSUPP" for 524, ...)."""
    return _KERNEL_NAMES.get(code) or _errno.errorcode.get(code) or f"E{code}"


class KvmError(Exception):
    """An ioctl that failed: ``errno`` as Linux reports it, the gRPC status
    ``code``, and ``count`` where KVM hands a number back (E2BIG of
    KVM_GET_REG_LIST). ``errno`` is None for a failure with no errno (the
    server unreachable, a deadline)."""

    def __init__(self, errno: Optional[int], message: str = "",
                 code: Optional[grpc.StatusCode] = None, count: Optional[int] = None) -> None:
        super().__init__(errno, message)
        self.errno = errno
        self.message = message
        self.code = code
        self.count = count

    @property
    def name(self) -> str:
        """The errno's name, or "no errno"."""
        return errno_name(self.errno) if self.errno is not None else "no errno"

    def __str__(self) -> str:
        head = f"{self.name} ({self.errno})" if self.errno is not None else str(self.code)
        return f"{head}: {self.message}" if self.message else head

    @classmethod
    def from_errno(cls, status: pb.KvmErrno) -> KvmError:
        """From a batch item status (errno != 0)."""
        return cls(status.errno, status.message,
                   count=status.count if status.HasField("count") else None)

    @classmethod
    def from_rpc_error(cls, error: grpc.RpcError) -> KvmError:
        """From a failed call: the errno comes from its rich error details."""
        code = error.code() if hasattr(error, "code") else None
        details = error.details() if hasattr(error, "details") else str(error)
        status = rpc_status.from_call(error) if hasattr(error, "trailing_metadata") else None
        for detail in status.details if status is not None else ():
            if detail.Is(pb.KvmErrno.DESCRIPTOR):
                kvm_errno = pb.KvmErrno()
                detail.Unpack(kvm_errno)
                err = cls.from_errno(kvm_errno)
                err.code = code
                return err
        return cls(None, details or "", code)
