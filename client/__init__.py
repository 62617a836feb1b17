"""rvkvm client: a kvm-ioctls-shaped library over gRPC (sync and asyncio),
a small VMM helper (``vmm``) and the ``rvkvm`` command (``cli``).

Imports only the generated ``rvkvm.v1`` code (and ``rvkvm.uapi``), never the server.
"""

from rvkvm.uapi.onereg import parse_name, short_name

from . import exits
from .errors import KvmError
from .kvm import Kvm, Vcpu, Vm

__all__ = ["Kvm", "KvmError", "Vcpu", "Vm", "exits", "parse_name", "short_name"]
