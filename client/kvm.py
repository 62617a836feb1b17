"""The rvkvm client: ``Kvm`` -> ``Vm`` -> ``Vcpu``, one method per ioctl.

Connect with ``Kvm.connect`` (it waits until the server answers and closes
the channel when used as a context manager)::

    with Kvm.connect("127.0.0.1:50051", timeout=5) as kvm:
        vm = kvm.create_vm()
        vm.set_user_memory_region(0, 0x8000_0000, 256 << 20)
        vcpu = vm.create_vcpu(0)
        vcpu.set_reg("core pc", 0x8000_0000)
        exit_ = vcpu.run()

or from asyncio with ``Kvm.connect_async`` (every method then returns an
awaitable)::

    async with await Kvm.connect_async("127.0.0.1:50051") as kvm:
        vm = await kvm.create_vm()

The same classes serve both kinds of channel, so ``Kvm(channel)`` also
takes a ``grpc.Channel`` or ``grpc.aio.Channel`` you made yourself.

Registers are ids (ints, Linux encoding) or names (``rvkvm.uapi.onereg``). Failures
raise ``KvmError`` carrying the kernel's errno. An exit that needs an answer
(MMIO load, SBI call, CSR access) is answered by filling its slot; the next
``run()`` sends it, as a VMM fills ``struct kvm_run``.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from fractions import Fraction
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

import grpc

from rvkvm.uapi.kvm import (  # noqa: F401  (re-exported for library users)
    KVM_CAP_COALESCED_MMIO,
    KVM_CAP_RISCV_MP_STATE_RESET,
    KVM_GUESTDBG_ENABLE,
    KVM_INTERRUPT_SET,
    KVM_INTERRUPT_UNSET,
    KVM_MEM_LOG_DIRTY_PAGES,
    KVM_MEM_READONLY,
    KVM_MP_STATE_INIT_RECEIVED,
    KVM_MP_STATE_RUNNABLE,
    KVM_MP_STATE_STOPPED,
)
from rvkvm.uapi.onereg import reg_id, reg_size
from rvkvm.v1 import kvm_pb2 as pb
from rvkvm.v1 import kvm_pb2_grpc as pb_grpc

from . import exits as X
from .errors import KvmError

Reg = Union[int, str]
DEFAULT_MAX_TRANSFER = 1 << 20



def _same(response: Any) -> Any:
    return response


def _none(response: Any) -> None:
    return None


DEFAULT_CONNECT_TIMEOUT = 5.0  # seconds Kvm.connect waits for the server


def _connect_error(address: str, timeout: float) -> KvmError:
    return KvmError(None, f"cannot reach an rvkvm server at {address} within {timeout:g} s",
                    grpc.StatusCode.UNAVAILABLE)


def reg_bytes(reg: Reg, value: int) -> bytes:
    """``value`` as the little-endian bytes of register ``reg``, truncated to
    its size (what ``Vcpu.set_reg`` sends)."""
    size = reg_size(reg_id(reg))
    return (value & ((1 << (8 * size)) - 1)).to_bytes(size, "little")


class _Caller:
    """Issues RPCs on a sync or an asyncio channel and turns failures into
    ``KvmError``; ``convert`` maps the response to the method's result."""

    def __init__(self, channel: Any, timeout: Optional[float]) -> None:
        self.stub = pb_grpc.KvmStub(channel)
        self.is_async = isinstance(channel, grpc.aio.Channel)
        self.timeout = timeout

    def unary(self, method: str, request: Any, convert: Callable[[Any], Any] = _same,
              timeout: Optional[float] = None) -> Any:
        rpc = getattr(self.stub, method)
        timeout = timeout if timeout is not None else self.timeout
        if self.is_async:
            async def call() -> Any:
                try:
                    return convert(await rpc(request, timeout=timeout))
                except grpc.RpcError as err:
                    raise KvmError.from_rpc_error(err) from None
            return call()
        try:
            return convert(rpc(request, timeout=timeout))
        except grpc.RpcError as err:
            raise KvmError.from_rpc_error(err) from None

    def server_stream(self, method: str, request: Any,
                      convert: Callable[[List[Any]], Any]) -> Any:
        """A server-streaming call whose responses are collected, then converted."""
        rpc = getattr(self.stub, method)
        if self.is_async:
            async def call() -> Any:
                try:
                    return convert([r async for r in rpc(request, timeout=self.timeout)])
                except grpc.RpcError as err:
                    raise KvmError.from_rpc_error(err) from None
            return call()
        try:
            return convert(list(rpc(request, timeout=self.timeout)))
        except grpc.RpcError as err:
            raise KvmError.from_rpc_error(err) from None

    def client_stream(self, method: str, requests: Iterable[Any],
                      convert: Callable[[Any], Any]) -> Any:
        rpc = getattr(self.stub, method)
        if self.is_async:
            async def call() -> Any:
                async def gen() -> Any:
                    for r in requests:
                        yield r
                try:
                    return convert(await rpc(gen(), timeout=self.timeout))
                except grpc.RpcError as err:
                    raise KvmError.from_rpc_error(err) from None
            return call()
        try:
            return convert(rpc(iter(requests), timeout=self.timeout))
        except grpc.RpcError as err:
            raise KvmError.from_rpc_error(err) from None


def _stats(response: Any) -> Dict[str, int]:
    return {stat.name: stat.value for stat in response.stats}


class Kvm:
    """``/dev/kvm`` of a remote rvkvm host: the system ioctls, and the
    factory of ``Vm`` handles.

    ``Kvm(channel)`` wraps a channel you own (``grpc.Channel``: methods
    return results; ``grpc.aio.Channel``: they return awaitables);
    ``Kvm.connect`` / ``Kvm.connect_async`` open one for you. ``timeout``:
    the deadline in seconds of every call (None: none; ``Vcpu.run`` takes
    its own). ``max_transfer``: the largest ReadMemory/WriteMemory payload
    sent in one message (larger transfers are streamed in chunks); keep it
    at most ``get_host_info().limits.max_transfer``.

    Every method raises ``KvmError``: with the kernel's ``errno`` when the
    server ran the ioctl and it failed, with ``errno`` None when the call
    itself failed (server unreachable, deadline exceeded).
    """

    def __init__(self, channel: Any, timeout: Optional[float] = None,
                 max_transfer: int = DEFAULT_MAX_TRANSFER) -> None:
        self._caller = _Caller(channel, timeout)
        self.channel = channel
        self.max_transfer = max_transfer
        self._owns_channel = False

    @classmethod
    def connect(cls, address: str, timeout: float = DEFAULT_CONNECT_TIMEOUT, *,
                call_timeout: Optional[float] = None,
                max_transfer: int = DEFAULT_MAX_TRANSFER) -> Kvm:
        """A ``Kvm`` on a new insecure channel to ``address`` ("host:port"),
        once the server answers.

        Waits at most ``timeout`` seconds for the channel to become ready,
        then raises ``KvmError`` (errno None, code UNAVAILABLE: "cannot reach
        an rvkvm server at ADDRESS within T s") and closes the channel.
        ``call_timeout`` and ``max_transfer`` are ``Kvm``'s ``timeout`` and
        ``max_transfer``. Use it as a context manager, or call ``close()``,
        to close the channel::

            with Kvm.connect("127.0.0.1:50051") as kvm:
                print(kvm.get_api_version())
        """
        channel = grpc.insecure_channel(address)
        try:
            grpc.channel_ready_future(channel).result(timeout=timeout)
        except grpc.FutureTimeoutError:
            channel.close()
            raise _connect_error(address, timeout) from None
        kvm = cls(channel, call_timeout, max_transfer)
        kvm._owns_channel = True
        return kvm

    @classmethod
    async def connect_async(cls, address: str, timeout: float = DEFAULT_CONNECT_TIMEOUT, *,
                            call_timeout: Optional[float] = None,
                            max_transfer: int = DEFAULT_MAX_TRANSFER) -> Kvm:
        """``connect`` for asyncio: a ``Kvm`` on a new ``grpc.aio`` channel
        (its methods return awaitables). Raises the same ``KvmError`` after
        ``timeout`` seconds. Close it with ``await kvm.aclose()`` or
        ``async with``::

            async with await Kvm.connect_async("127.0.0.1:50051") as kvm:
                vm = await kvm.create_vm()
        """
        channel = grpc.aio.insecure_channel(address)
        try:
            await asyncio.wait_for(channel.channel_ready(), timeout)
        except asyncio.TimeoutError:
            await channel.close()
            raise _connect_error(address, timeout) from None
        kvm = cls(channel, call_timeout, max_transfer)
        kvm._owns_channel = True
        return kvm

    def close(self) -> None:
        """Close the channel if ``connect`` opened it (a channel passed to
        ``Kvm()`` stays open: its owner closes it). Sync channels only; use
        ``aclose`` for asyncio."""
        if self._owns_channel:
            self.channel.close()

    async def aclose(self) -> None:
        """``close`` for a ``connect_async`` Kvm."""
        if self._owns_channel:
            await self.channel.close()

    def __enter__(self) -> Kvm:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> Kvm:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def get_api_version(self) -> Any:
        """KVM_GET_API_VERSION: 12."""
        return self._caller.unary("GetApiVersion", pb.GetApiVersionRequest(),
                                  lambda r: r.version)

    def check_extension(self, cap: int) -> Any:
        """KVM_CHECK_EXTENSION on /dev/kvm: 0 if capability ``cap``
        (KVM_CAP_*) is absent, else its cap-specific value."""
        return self._caller.unary("CheckExtension", pb.CheckExtensionRequest(cap=cap),
                                  lambda r: r.value)

    def get_host_info(self) -> Any:
        """The ``HostInfo`` message (no ioctl): host ISA, the ONE_REG ISA and
        SBI extension tables, FWFT features, ABI profiles, limits, timebase
        frequency."""
        return self._caller.unary("GetHostInfo", pb.GetHostInfoRequest())

    def create_vm(self, abi_profile: str = "", machine_type: int = 0,
                  clock: Union[None, str, int, Fraction] = None) -> Any:
        """KVM_CREATE_VM: a new ``Vm``. ``abi_profile`` names the Linux KVM
        ABI it follows (``HostInfo.abi_profiles``; "" = the default);
        ``machine_type`` is ignored on RISC-V. ``clock`` is the guest clock
        (an rvkvm setting, ``GuestClock`` in the proto): None the server's
        default (``HostInfo.default_clock``), ``"host"`` the host's clock,
        or nanoseconds of guest time per retired instruction (``1``,
        ``Fraction(1, 4)``, ``"1/4"``) for deterministic time. Errors:
        EINVAL for an unknown profile or a bad clock, ENOSPC when the
        server hosts its maximum of VMs."""
        request = pb.CreateVmRequest(machine_type=machine_type, abi_profile=abi_profile)
        if clock is not None:
            request.clock.CopyFrom(clock_message(clock))
        return self._caller.unary("CreateVm", request, lambda r: Vm(self, r.vm_id))

    def list_vms(self) -> Any:
        """``ListVmsResponse``: the calling tenant, its VMs, quota and usage."""
        return self._caller.unary("ListVms", pb.ListVmsRequest())

    def destroy_vm(self, vm_id: str) -> Any:
        """DestroyVm by handle."""
        return self._caller.unary("DestroyVm", pb.DestroyVmRequest(vm_id=vm_id), _none)

    def vm(self, vm_id: str) -> Vm:
        """A handle on an existing VM (no call; EBADF later if it is gone)."""
        return Vm(self, vm_id)


class Vm:
    """A VM of a ``Kvm`` host (the VM file descriptor): memory slots, guest
    memory, vCPUs. ``id`` is the server's handle. Calls on a destroyed or
    unknown VM raise ``KvmError`` EBADF."""

    def __init__(self, kvm: Kvm, vm_id: str) -> None:
        self.kvm = kvm
        self.id = vm_id
        self._caller = kvm._caller

    def __repr__(self) -> str:
        return f"Vm({self.id!r})"

    def check_extension(self, cap: int) -> Any:
        """KVM_CHECK_EXTENSION on the VM fd (answers for this VM's ABI)."""
        return self._caller.unary("CheckExtension",
                                  pb.CheckExtensionRequest(cap=cap, vm_id=self.id),
                                  lambda r: r.value)

    def enable_cap(self, cap: int, flags: int = 0, args: Sequence[int] = ()) -> Any:
        """KVM_ENABLE_CAP on the VM; RISC-V has KVM_CAP_RISCV_MP_STATE_RESET
        (242: SBI resets leave the vCPU state to the VMM). EINVAL for any
        other cap, flags != 0 or bad args."""
        return self._caller.unary("EnableCap", pb.EnableCapRequest(
            vm_id=self.id, cap=cap, flags=flags, args=list(args)), _none)

    def set_user_memory_region(self, slot: int, guest_phys_addr: int, memory_size: int,
                               flags: int = 0, userspace_addr: int = 0) -> Any:
        """KVM_SET_USER_MEMORY_REGION: map ``memory_size`` bytes (page
        aligned; 0 deletes the slot) at ``guest_phys_addr`` as ``slot``.

        The server allocates and owns the (zeroed) memory; read and write it
        with ``read_memory``/``write_memory``. ``userspace_addr`` is only the
        slot's identity, as Linux compares it when a slot is moved (any page
        aligned value). ``flags``: ``KVM_MEM_LOG_DIRTY_PAGES``,
        ``KVM_MEM_READONLY`` (guest stores become MMIO exits). Errors as in
        Linux: EINVAL (alignment, flags, an illegal change of a slot),
        EEXIST (overlaps another slot), EFAULT (beyond the guest-physical
        address space)."""
        return self._caller.unary("SetUserMemoryRegion", pb.SetUserMemoryRegionRequest(
            vm_id=self.id, slot=slot, flags=flags, guest_phys_addr=guest_phys_addr,
            memory_size=memory_size, userspace_addr=userspace_addr), _none)

    def get_dirty_log(self, slot: int) -> Any:
        """KVM_GET_DIRTY_LOG: the slot's dirty bitmap (bytes, one bit per
        page, little-endian) and clear it. ENOENT if the slot does not log."""
        return self._caller.unary("GetDirtyLog", pb.GetDirtyLogRequest(vm_id=self.id, slot=slot),
                                  lambda r: r.bitmap)

    def read_memory(self, gpa: int, size: int) -> Any:
        """``size`` bytes of guest-physical memory at ``gpa`` (the VMM
        reading its mapping of the slots; no ioctl). Above ``max_transfer``
        bytes it is streamed in chunks. EFAULT if any byte is outside every
        memory slot."""
        request = pb.ReadMemoryRequest(vm_id=self.id, gpa=gpa, size=size)
        if size <= self.kvm.max_transfer:
            return self._caller.unary("ReadMemory", request, lambda r: r.data)
        return self._caller.server_stream("ReadMemoryStream", request,
                                          lambda chunks: b"".join(c.data for c in chunks))

    def write_memory(self, gpa: int, data: bytes) -> Any:
        """Write ``data`` to guest-physical memory at ``gpa`` (read-only
        slots included, as the VMM can); streamed in chunks above
        ``max_transfer`` bytes. EFAULT outside every memory slot."""
        data = bytes(data)
        step = self.kvm.max_transfer
        if len(data) <= step:
            return self._caller.unary(
                "WriteMemory", pb.WriteMemoryRequest(vm_id=self.id, gpa=gpa, data=data), _none)
        chunks = (pb.WriteMemoryRequest(vm_id=self.id, gpa=gpa + i, data=data[i:i + step])
                  for i in range(0, len(data), step))
        return self._caller.client_stream("WriteMemoryStream", chunks, _none)

    def create_vcpu(self, vcpu_id: int) -> Any:
        """KVM_CREATE_VCPU: a new ``Vcpu`` (``vcpu_id`` is also the hart id).
        It starts at pc 0 in S-mode; the VM's first vCPU is RUNNABLE, later
        ones STOPPED until SBI HSM ``hart_start`` or ``set_mp_state``. SBI
        DBCN is off until ``set_reg("sbi_ext DBCN", 1)``. EEXIST if the id
        is taken, EINVAL if it is out of range or the VM is full."""
        return self._caller.unary("CreateVcpu",
                                  pb.CreateVcpuRequest(vm_id=self.id, vcpu_id=vcpu_id),
                                  lambda r: Vcpu(self, vcpu_id))

    def vcpu(self, vcpu_id: int) -> Vcpu:
        """A handle on an existing vCPU."""
        return Vcpu(self, vcpu_id)

    def destroy(self) -> Any:
        """close() of the VM fd: the VM, its vCPUs and memory go away."""
        return self._caller.unary("DestroyVm", pb.DestroyVmRequest(vm_id=self.id), _none)

    def batch_one_reg(self, ops: Sequence[Tuple[int, Reg, Optional[bytes]]],
                      stop_on_error: bool = False) -> Any:
        """Many ONE_REG accesses in one call: ``ops`` are (vcpu_id, reg,
        value) with value None for a get. Returns one item per applied op:
        the value read (get), None (set) or the ``KvmError`` of that op.
        With ``stop_on_error`` the ops after the first failure are not
        applied and get no item. Raises only for the call itself (EBADF)."""
        msgs = []
        for vcpu_id, reg, value in ops:
            op = pb.RegOp(vcpu_id=vcpu_id, id=reg_id(reg))
            if value is not None:
                op.set_value = bytes(value)
            msgs.append(op)

        def convert(response: pb.BatchOneRegResponse) -> List[Any]:
            out: List[Any] = []
            for msg, result in zip(msgs, response.results):
                if result.status.errno:
                    out.append(KvmError.from_errno(result.status))
                else:
                    out.append(None if msg.HasField("set_value") else result.value)
            return out

        return self._caller.unary("BatchOneReg", pb.BatchOneRegRequest(
            vm_id=self.id, ops=msgs, stop_on_error=stop_on_error), convert)

    # coalesced MMIO (KVM_CAP_COALESCED_MMIO)

    def register_coalesced_mmio(self, addr: int, size: int, pio: int = 0) -> Any:
        """KVM_REGISTER_COALESCED_MMIO: stores wholly inside [addr, addr +
        size) queue in the VM's ring instead of exiting (loads still exit)."""
        return self._caller.unary("RegisterCoalescedMmio", pb.RegisterCoalescedMmioRequest(
            vm_id=self.id, zone=pb.CoalescedMmioZone(addr=addr, size=size, pio=pio)), _none)

    def unregister_coalesced_mmio(self, addr: int, size: int, pio: int = 0) -> Any:
        """KVM_UNREGISTER_COALESCED_MMIO: drops the zones containing the range."""
        return self._caller.unary("UnregisterCoalescedMmio", pb.UnregisterCoalescedMmioRequest(
            vm_id=self.id, zone=pb.CoalescedMmioZone(addr=addr, size=size, pio=pio)), _none)

    def drain_coalesced_mmio(self) -> Any:
        """The ring's queued writes (``CoalescedMmio``), oldest first. Exits
        carry the ring too (``Exit.coalesced_mmio``); this flushes it while
        no vCPU exits."""
        return self._caller.unary("DrainCoalescedMmio",
                                  pb.DrainCoalescedMmioRequest(vm_id=self.id),
                                  lambda r: X.coalesced_from_pb(r.entries))

    def get_stats(self) -> Any:
        """KVM_GET_STATS_FD on the VM, read: {name: value} (``Stats`` in
        ``rvkvm.v1`` has each one's type, unit and exponent)."""
        return self._caller.unary("GetStats", pb.GetStatsRequest(vm_id=self.id), _stats)

    def run_many(self, vcpus: Sequence[Vcpu], budget: int = 0, idle_timeout: float = 0.0) -> Any:
        """Run several vCPUs concurrently (each answers its own last exit);
        returns an ``Exit`` or a ``KvmError`` per vCPU, in order. Each vCPU
        at most once (else EINVAL); ``budget``/``idle_timeout`` as in
        ``Vcpu.run``."""
        runs = [v._run_request(budget, idle_timeout) for v in vcpus]
        by_id = {v.id: v for v in vcpus}

        def convert(response: pb.RunManyResponse) -> List[Any]:
            out: List[Any] = []
            for result in response.results:
                if result.status.errno:
                    out.append(KvmError.from_errno(result.status))
                else:
                    out.append(by_id[result.vcpu_id]._took(result.exit))
            return out

        return self._caller.unary("RunMany", pb.RunManyRequest(vm_id=self.id, runs=runs), convert)


class Vcpu:
    """A vCPU (the vCPU file descriptor); one method per vCPU ioctl.

    Registers are named by ONE_REG id (an int in Linux's encoding) or by
    name (``"core pc"``, ``"csr sstatus"``, ``"isa_ext SMNPM"``,
    ``"sbi_ext DBCN"``: see ``rvkvm.uapi.onereg``). ``last_exit`` is the exit
    the last ``run()`` returned; fill its answer slot before the next
    ``run()``, which sends it (see ``rvkvm.client.exits``).
    """

    def __init__(self, vm: Vm, vcpu_id: int) -> None:
        self.vm = vm
        self.id = vcpu_id
        self.ref = pb.VcpuRef(vm_id=vm.id, vcpu_id=vcpu_id)
        self._caller = vm._caller
        self.last_exit: Optional[X.Exit] = None  # answered by the next run()
        # Exit.seq of last_exit: the next run() names the exit it answers, so
        # a run retried after a deadline gets the exit it missed, exactly once.
        self.last_seq = 0

    def __repr__(self) -> str:
        return f"Vcpu({self.vm.id!r}, {self.id})"

    # ONE_REG

    def get_one_reg(self, reg: Reg) -> Any:
        """KVM_GET_ONE_REG: the value as little-endian bytes of the id's size.
        ENOENT for an id this vCPU does not have, EINVAL for a wrong size in
        the id; ValueError for an unknown name."""
        return self._caller.unary("GetOneReg", pb.GetOneRegRequest(vcpu=self.ref, id=reg_id(reg)),
                                  lambda r: r.value)

    def set_one_reg(self, reg: Reg, value: bytes) -> Any:
        """KVM_SET_ONE_REG with little-endian bytes of exactly the id's size
        (another length: EFAULT, as a short user buffer). ENOENT: no such
        register; EINVAL: a value the register refuses; EBUSY: ISA/SBI
        configuration (``config isa``, ``isa_ext *``, ``sbi_ext *``) changed
        after the first ``run()``."""
        return self._caller.unary(
            "SetOneReg", pb.SetOneRegRequest(vcpu=self.ref, id=reg_id(reg), value=bytes(value)),
            _none)

    def get_reg(self, reg: Reg) -> Any:
        """``get_one_reg`` as an unsigned integer (same errors)."""
        return self._caller.unary("GetOneReg", pb.GetOneRegRequest(vcpu=self.ref, id=reg_id(reg)),
                                  lambda r: int.from_bytes(r.value, "little"))

    def set_reg(self, reg: Reg, value: int) -> Any:
        """``set_one_reg`` from an integer, truncated to the id's size (same
        errors), e.g. ``vcpu.set_reg("core a0", 0)``."""
        rid = reg_id(reg)
        return self.set_one_reg(rid, reg_bytes(rid, value))

    def get_reg_list(self, n: Optional[int] = None) -> Any:
        """KVM_GET_REG_LIST: the ids of every register this vCPU has now, in
        Linux's order. With ``n`` fewer than needed: ``KvmError`` E2BIG whose
        ``count`` is the number needed."""
        return self._caller.unary("GetRegList", pb.GetRegListRequest(vcpu=self.ref, n=n),
                                  lambda r: list(r.ids))

    def get_reg_names(self) -> Any:
        """(id, short name) for every register of KVM_GET_REG_LIST, e.g.
        ``(0x8030000002000000, "core pc")``."""
        return self._caller.unary("GetRegList", pb.GetRegListRequest(vcpu=self.ref),
                                  lambda r: list(zip(r.ids, r.names)))

    # KVM_RUN

    def _run_request(self, budget: int, idle_timeout: float,
                     interrupt: Optional[int] = None) -> pb.RunRequest:
        request = pb.RunRequest(vcpu=self.ref, budget=budget,
                                idle_timeout_ms=int(idle_timeout * 1000), interrupt=interrupt)
        completion = self.last_exit.completion() if self.last_exit is not None else None
        if completion is not None:
            request.completion.CopyFrom(completion)
        request.completion.exit_seq = self.last_seq
        return request

    def _took(self, msg: pb.Exit) -> X.Exit:
        self.last_exit = X.from_pb(msg)
        self.last_seq = msg.seq
        return self.last_exit

    def run(self, budget: int = 0, idle_timeout: float = 0.0,
            timeout: Optional[float] = None, interrupt: Optional[int] = None) -> Any:
        """KVM_RUN: sends the answer filled into ``last_exit``, runs the vCPU
        and returns the next exit (a ``rvkvm.client.exits.Exit``; ``IntrExit``
        when ``budget`` instructions ran (0: no budget), after
        ``idle_timeout`` seconds idle in WFI or STOPPED (0: wait until
        woken), or on ``kick()``). ``timeout``: the RPC deadline (the server
        then kicks the vCPU; the exit is kept for the next ``run()``).
        ``interrupt``: a KVM_INTERRUPT value applied before the run, as a
        VMM calls KVM_INTERRUPT then KVM_RUN (no separate Interrupt call).

        Raises ``KvmError`` where Linux's KVM_RUN fails: EOPNOTSUPP or EIO
        for guest accesses KVM cannot emulate (MMIO by an unusual
        instruction, instruction fetch outside RAM, misaligned MMIO), EINVAL
        for an answer of the wrong kind. After a shutdown every vCPU is
        STOPPED: ``run()`` runs nothing and returns ``IntrExit`` (idle or
        kick)."""
        return self._caller.unary("Run", self._run_request(budget, idle_timeout, interrupt),
                                  self._took, timeout=timeout)

    def run_stream(self) -> Any:
        """A ``RunStream`` session: its ``run()`` is this vCPU's ``run()``
        over one bidirectional stream (no call setup per exit, the fastest
        way to serve many exits). Use it as a context manager (``async with``
        on an asyncio channel)::

            with vcpu.run_stream() as stream:
                exit_ = stream.run()
        """
        if self._caller.is_async:
            return AsyncRunStream(self)
        return RunStream(self)

    # the other vCPU ioctls

    def interrupt(self, irq: int = KVM_INTERRUPT_SET) -> Any:
        """KVM_INTERRUPT: raise (``KVM_INTERRUPT_SET``) or lower (any other
        value, e.g. ``KVM_INTERRUPT_UNSET``) the supervisor external
        interrupt line. Asynchronous: it works while the vCPU runs."""
        return self._caller.unary("Interrupt", pb.InterruptRequest(vcpu=self.ref, irq=irq), _none)

    def get_stats(self) -> Any:
        """KVM_GET_STATS_FD on the vCPU, read: {name: value}, KVM's names
        where KVM has the statistic (``exits``, ``ecall_exit_stat``,
        ``mmio_exit_user``, ``halt_wait_ns``, ...) and rvkvm's own
        (``rvkvm_instructions``: guest instructions retired, ...)."""
        return self._caller.unary("GetStats", pb.GetStatsRequest(vcpu=self.ref), _stats)

    def get_mp_state(self) -> Any:
        """KVM_GET_MP_STATE: ``KVM_MP_STATE_RUNNABLE`` (0) or ``_STOPPED`` (5)."""
        return self._caller.unary("GetMpState", pb.GetMpStateRequest(vcpu=self.ref),
                                  lambda r: r.mp_state)

    def set_mp_state(self, mp_state: int) -> Any:
        """KVM_SET_MP_STATE: RUNNABLE powers the vCPU on, STOPPED off;
        INIT_RECEIVED (2) resets it when the VM enabled
        KVM_CAP_RISCV_MP_STATE_RESET. EINVAL for anything else."""
        return self._caller.unary("SetMpState",
                                  pb.SetMpStateRequest(vcpu=self.ref, mp_state=mp_state), _none)

    def set_guest_debug(self, control: int) -> Any:
        """KVM_SET_GUEST_DEBUG: with ``KVM_GUESTDBG_ENABLE`` an ``ebreak``
        exits with ``DebugExit`` (pc at the ebreak) instead of trapping in
        the guest."""
        return self._caller.unary("SetGuestDebug",
                                  pb.SetGuestDebugRequest(vcpu=self.ref, control=control), _none)

    def kick(self) -> Any:
        """End the running (or the next) ``run()`` with ``IntrExit("kick")``,
        as a signal to the vCPU thread does. No ioctl; safe from any thread."""
        return self._caller.unary("Kick", pb.KickRequest(vcpu=self.ref), _none)

    def get_fwft(self, feature_id: int) -> Any:
        """The ``FwftState`` message (enable, flags, value) of SBI FWFT
        feature ``feature_id`` (e.g. 5, POINTER_MASKING_PMLEN), as its
        KVM_REG_RISCV_SBI_FWFT ONE_REG registers hold it. ENOENT if KVM has
        no ONE_REG state for it or FWFT is off for this vCPU."""
        return self._caller.unary("GetFwft",
                                  pb.GetFwftRequest(vcpu=self.ref, feature_id=feature_id))

    def set_fwft(self, feature_id: int, enable: Optional[bool] = None,
                 value: Optional[int] = None, flags: Optional[int] = None) -> Any:
        """Set the given fields through their ONE_REG registers, in the
        order enable, value, flags; returns the new ``FwftState``. ``flags``
        = 1 (SBI_FWFT_SET_FLAG_LOCK) locks the feature against the guest's
        FWFT_SET only; later ``set_fwft`` calls still work. Errors are the
        ONE_REG ones (ENOENT, EINVAL for a value the host refuses)."""
        return self._caller.unary("SetFwft", pb.SetFwftRequest(
            vcpu=self.ref, feature_id=feature_id, enable=enable, value=value, flags=flags))


class RunStream:
    """Blocking ``RunStream`` session (sync channel), from
    ``Vcpu.run_stream()``. Use as a context manager."""

    _END = object()

    def __init__(self, vcpu: Vcpu) -> None:
        self._vcpu = vcpu
        self._requests: queue.Queue = queue.Queue()
        self._responses: Iterator[pb.Exit] = vcpu._caller.stub.RunStream(self._pending())
        self._lock = threading.Lock()

    def _pending(self) -> Iterator[pb.RunRequest]:
        while True:
            request = self._requests.get()
            if request is self._END:
                return
            yield request

    def run(self, budget: int = 0, idle_timeout: float = 0.0,
            interrupt: Optional[int] = None) -> X.Exit:
        """``Vcpu.run`` over the stream (same answers, exits and errors; a
        failed run ends the stream)."""
        with self._lock:
            self._requests.put(self._vcpu._run_request(budget, idle_timeout, interrupt))
            try:
                return self._vcpu._took(next(self._responses))
            except grpc.RpcError as err:
                raise KvmError.from_rpc_error(err) from None

    def close(self) -> None:
        """End the stream (the vCPU stays as it is)."""
        self._requests.put(self._END)

    def __enter__(self) -> RunStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncRunStream:
    """``RunStream`` session on an asyncio channel, from
    ``Vcpu.run_stream()``. Use ``async with``."""

    def __init__(self, vcpu: Vcpu) -> None:
        self._vcpu = vcpu
        self._call = vcpu._caller.stub.RunStream()

    async def run(self, budget: int = 0, idle_timeout: float = 0.0,
                  interrupt: Optional[int] = None) -> X.Exit:
        """``Vcpu.run`` over the stream."""
        try:
            await self._call.write(self._vcpu._run_request(budget, idle_timeout, interrupt))
            return self._vcpu._took(await self._call.read())
        except grpc.RpcError as err:
            raise KvmError.from_rpc_error(err) from None

    async def close(self) -> None:
        """End the stream."""
        await self._call.done_writing()

    async def __aenter__(self) -> AsyncRunStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


def clock_message(clock: Union[str, int, Fraction]) -> pb.GuestClock:
    """A ``GuestClock`` message: ``"host"`` or nanoseconds per instruction
    (a positive number, or a string such as ``"1/4"``)."""
    if isinstance(clock, str) and clock.strip() == "host":
        return pb.GuestClock(mode=pb.GuestClock.MODE_HOST)
    try:
        rate = Fraction(clock)
    except (TypeError, ValueError, ZeroDivisionError):
        raise ValueError(f"clock {clock!r}: not 'host' or a number of ns per instruction") \
            from None
    if rate <= 0:
        raise ValueError(f"clock {clock!r}: ns per instruction must be positive")
    return pb.GuestClock(mode=pb.GuestClock.MODE_DETERMINISTIC,
                         ns_per_insn_num=rate.numerator, ns_per_insn_den=rate.denominator)
