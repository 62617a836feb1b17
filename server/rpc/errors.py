"""The one place where KVM errors become gRPC statuses.

A ``KvmError`` (an errno) becomes a ``google.rpc.Status`` whose code comes
from ``ERRNO_TO_CODE`` and whose details carry the errno twice: as a
``google.rpc.ErrorInfo`` (reason = errno name, metadata errno/name) for
generic clients and as an ``rvkvm.v1.KvmErrno``. The table is documented in
``proto/rvkvm/v1/kvm.proto``; keep the two in step.
"""

from __future__ import annotations

import errno
from typing import Dict, Optional

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from rvkvm.server.kvm.errors import ENOTSUPP, KvmError, errno_name
from rvkvm.v1 import kvm_pb2 as pb

from .limits import MAX_ERROR_MESSAGE

ERROR_DOMAIN = "rvkvm.v1"

ERRNO_TO_CODE: Dict[int, grpc.StatusCode] = {
    errno.ENOENT: grpc.StatusCode.NOT_FOUND,
    errno.EBADF: grpc.StatusCode.NOT_FOUND,
    errno.EINVAL: grpc.StatusCode.INVALID_ARGUMENT,
    errno.EFAULT: grpc.StatusCode.INVALID_ARGUMENT,
    errno.EEXIST: grpc.StatusCode.ALREADY_EXISTS,
    errno.EBUSY: grpc.StatusCode.FAILED_PRECONDITION,
    errno.EIO: grpc.StatusCode.FAILED_PRECONDITION,
    errno.EPROTO: grpc.StatusCode.FAILED_PRECONDITION,
    errno.E2BIG: grpc.StatusCode.OUT_OF_RANGE,
    errno.EOPNOTSUPP: grpc.StatusCode.UNIMPLEMENTED,
    ENOTSUPP: grpc.StatusCode.UNIMPLEMENTED,
    errno.ENOMEM: grpc.StatusCode.RESOURCE_EXHAUSTED,
    errno.ENOSPC: grpc.StatusCode.RESOURCE_EXHAUSTED,
    errno.EPERM: grpc.StatusCode.PERMISSION_DENIED,
    errno.EACCES: grpc.StatusCode.PERMISSION_DENIED,
    errno.ESHUTDOWN: grpc.StatusCode.UNAVAILABLE,
    errno.EHOSTDOWN: grpc.StatusCode.UNAVAILABLE,  # the VM's worker process died
}


def status_code(err: KvmError) -> grpc.StatusCode:
    return ERRNO_TO_CODE.get(err.errno, grpc.StatusCode.UNKNOWN)


def _cut(text: str) -> str:
    if len(text) <= MAX_ERROR_MESSAGE:
        return text
    return text[:MAX_ERROR_MESSAGE - 3] + "..."


def kvm_errno(err: KvmError) -> pb.KvmErrno:
    """The errno of ``err`` as a message (detail and batch item status)."""
    msg = pb.KvmErrno(errno=err.errno, name=err.name, message=_cut(err.message))
    if err.count is not None:
        msg.count = err.count
    if err.exit_seq is not None:
        msg.exit_seq = err.exit_seq
    return msg


OK = pb.KvmErrno(errno=0, name="OK")


def _pack(message: object) -> any_pb2.Any:
    detail = any_pb2.Any()
    detail.Pack(message)
    return detail


class _Status(grpc.Status):
    def __init__(self, code: grpc.StatusCode, details: str, trailing_metadata: tuple) -> None:
        self.code = code
        self.details = details
        self.trailing_metadata = trailing_metadata


def to_status(err: KvmError, code: Optional[grpc.StatusCode] = None,
              trailing: tuple = ()) -> grpc.Status:
    """``grpc.Status`` for ``context.abort_with_status`` (``code``: instead
    of the errno's; ``trailing``: metadata for the trailers besides the
    details, which an abort sends instead of any set before). An error that
    carries a ``google.rpc.QuotaFailure`` (``quotas.QuotaError``) adds it
    to the details."""
    info = error_details_pb2.ErrorInfo(
        reason=err.name, domain=ERROR_DOMAIN,
        metadata={"errno": str(err.errno), "name": errno_name(err.errno)})
    details = [_pack(info), _pack(kvm_errno(err))]
    quota_failure = getattr(err, "quota_failure", None)
    if quota_failure is not None:
        details.append(_pack(quota_failure()))
    status = status_pb2.Status(
        code=(code or status_code(err)).value[0], message=_cut(str(err)), details=details)
    made = rpc_status.to_status(status)
    if not trailing:
        return made
    return _Status(made.code, made.details, tuple(made.trailing_metadata) + tuple(trailing))
