from google.rpc import error_details_pb2 as _error_details_pb2
from google.rpc import status_pb2 as _status_pb2
from rvkvm.v1 import kvm_pb2 as _kvm_pb2
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RpcErrorDetails(_message.Message):
    __slots__ = ("status", "error_info", "kvm_errno")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    ERROR_INFO_FIELD_NUMBER: _ClassVar[int]
    KVM_ERRNO_FIELD_NUMBER: _ClassVar[int]
    status: _status_pb2.Status
    error_info: _error_details_pb2.ErrorInfo
    kvm_errno: _kvm_pb2.KvmErrno
    def __init__(self, status: _Optional[_Union[_status_pb2.Status, _Mapping]] = ..., error_info: _Optional[_Union[_error_details_pb2.ErrorInfo, _Mapping]] = ..., kvm_errno: _Optional[_Union[_kvm_pb2.KvmErrno, _Mapping]] = ...) -> None: ...
