"""rvkvm client: a kvm-ioctls-shaped library over gRPC (sync and asyncio),
a small VMM helper (``vmm``) and the ``rvkvm`` command (``cli``).

Imports only the generated ``rvkvm_proto`` code, never the server.
"""

from . import exits
from .errors import KvmError
from .kvm import Kvm, Vcpu, Vm
from .regnames import parse_name, short_name

__all__ = ["Kvm", "KvmError", "Vcpu", "Vm", "exits", "parse_name", "short_name"]
