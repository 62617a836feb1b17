"""rvkvm client: a kvm-ioctls-shaped library over gRPC (sync and asyncio),
a small VMM (``rvkvm.client.vmm.Vmm``) and the ``rvkvm`` command
(``rvkvm.client.cli``).

Connect to a server (``rvkvm-server --listen 127.0.0.1:50051``) with
``Kvm.connect``; it waits up to ``timeout`` seconds for the server and
raises ``KvmError`` if it cannot be reached. Then one method per KVM ioctl,
``Kvm`` -> ``Vm`` -> ``Vcpu``::

    from rvkvm.client import Kvm, exits

    with Kvm.connect("127.0.0.1:50051", timeout=5) as kvm:   # closes the channel
        vm = kvm.create_vm()                                   # KVM_CREATE_VM
        vm.set_user_memory_region(0, 0x8000_0000, 256 << 20)   # RAM (server-owned)
        vm.write_memory(0x8000_0000, code)                     # load the guest
        vcpu = vm.create_vcpu(0)                               # S-mode, pc 0
        vcpu.set_reg("sbi_ext DBCN", 1)                        # the SBI console
        vcpu.set_reg("core pc", 0x8000_0000)                   # registers by name
        exit_ = vcpu.run()                                     # KVM_RUN
        if isinstance(exit_, exits.SbiExit):
            exit_.ret = [0, 0]                                 # sent by the next run()

asyncio: ``kvm = await Kvm.connect_async(address)`` (``async with`` closes
it); every method then returns an awaitable. ``Kvm(channel)`` wraps a
``grpc.Channel`` or ``grpc.aio.Channel`` you made yourself.

Failures raise ``KvmError`` (``.errno`` as Linux reports it, ``.code`` the
gRPC status). Exits are the classes of ``rvkvm.client.exits``; register
names (``parse_name``, ``short_name``) come from ``rvkvm.uapi.onereg``;
``rvkvm.client.vmm.Vmm`` loads ELFs, builds a device tree and serves the
console and MMIO devices. The README has a complete exit loop. Imports only
the generated ``rvkvm.v1`` code (and ``rvkvm.uapi``), never the server.
"""

from rvkvm.uapi.onereg import parse_name, short_name

from . import exits
from .errors import KvmError
from .kvm import Kvm, Vcpu, Vm

__all__ = ["Kvm", "KvmError", "Vcpu", "Vm", "exits", "parse_name", "short_name"]
