"""The KVM model of rvkvm: ONE_REG ids, extension tables, ABI/host profiles,
and the runtime (``KvmSystem`` -> ``Vm`` -> ``Vcpu``, exits in ``exits``).

Plain Python objects and errno-style errors (``KvmError``); no gRPC here.
"""

from rvkvm.uapi.onereg import RegId, decode_id, make_id, name_of, parse_name, reg_size, short_name

from .backend import InMemoryVcpuBackend, VcpuRegisterBackend
from .errors import ENOTSUPP, KvmError
from .exits import Exit
from .profiles import (
    DEFAULT_KERNEL,
    KERNEL_PROFILES,
    HostProfile,
    KernelProfile,
    Platform,
    VcpuConfig,
    kernel_profile,
    platform,
)
from .reglist import OneRegMap, copy_reg_list, reg_list
from .system import KvmSystem
from .vcpu import Vcpu
from .vm import Vm

__all__ = [
    "DEFAULT_KERNEL",
    "ENOTSUPP",
    "Exit",
    "KERNEL_PROFILES",
    "HostProfile",
    "InMemoryVcpuBackend",
    "KernelProfile",
    "KvmError",
    "KvmSystem",
    "OneRegMap",
    "Platform",
    "RegId",
    "VcpuConfig",
    "Vcpu",
    "VcpuRegisterBackend",
    "Vm",
    "copy_reg_list",
    "decode_id",
    "kernel_profile",
    "make_id",
    "name_of",
    "parse_name",
    "platform",
    "reg_list",
    "reg_size",
    "short_name",
]
