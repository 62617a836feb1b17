"""The rvkvm client: ``Kvm`` -> ``Vm`` -> ``Vcpu``, one method per ioctl.

The same classes serve both kinds of channel. On a ``grpc.Channel`` every
method returns its result; on a ``grpc.aio.Channel`` it returns an
awaitable of it::

    kvm = Kvm(grpc.insecure_channel("127.0.0.1:50051"))
    vm = kvm.create_vm()
    vcpu = vm.create_vcpu(0)
    vcpu.set_reg("core pc", 0x8000_0000)
    exit_ = vcpu.run()

    kvm = Kvm(grpc.aio.insecure_channel(...))
    vm = await kvm.create_vm()

Registers are ids (ints, Linux encoding) or names (``rvkvm.uapi.onereg``). Failures
raise ``KvmError`` carrying the kernel's errno. An exit that needs an answer
(MMIO load, SBI call, CSR access) is answered by filling its slot; the next
``run()`` sends it, as a VMM fills ``struct kvm_run``.
"""

from __future__ import annotations

import queue
import threading
from typing import Any, Callable, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

import grpc

from rvkvm.uapi.kvm import (  # noqa: F401  (re-exported for library users)
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


class Kvm:
    """``/dev/kvm`` of a remote rvkvm host."""

    def __init__(self, channel: Any, timeout: Optional[float] = None,
                 max_transfer: int = DEFAULT_MAX_TRANSFER) -> None:
        self._caller = _Caller(channel, timeout)
        self.max_transfer = max_transfer

    def get_api_version(self) -> Any:
        return self._caller.unary("GetApiVersion", pb.GetApiVersionRequest(),
                                  lambda r: r.version)

    def check_extension(self, cap: int) -> Any:
        return self._caller.unary("CheckExtension", pb.CheckExtensionRequest(cap=cap),
                                  lambda r: r.value)

    def get_host_info(self) -> Any:
        """``HostInfo`` message: ISA, SBI and FWFT tables, ABI profiles, limits."""
        return self._caller.unary("GetHostInfo", pb.GetHostInfoRequest())

    def create_vm(self, abi_profile: str = "", machine_type: int = 0) -> Any:
        """KVM_CREATE_VM; ``abi_profile`` names a kernel ABI ("" = default)."""
        return self._caller.unary(
            "CreateVm", pb.CreateVmRequest(machine_type=machine_type, abi_profile=abi_profile),
            lambda r: Vm(self, r.vm_id))

    def list_vms(self) -> Any:
        """``ListVmsResponse``: the calling tenant, its VMs, quota and usage."""
        return self._caller.unary("ListVms", pb.ListVmsRequest())

    def destroy_vm(self, vm_id: str) -> Any:
        """DestroyVm by handle."""
        return self._caller.unary("DestroyVm", pb.DestroyVmRequest(vm_id=vm_id), _none)

    def vm(self, vm_id: str) -> Vm:
        """A handle on an existing VM."""
        return Vm(self, vm_id)


class Vm:
    """A VM of a ``Kvm`` host (``id`` is the server's handle)."""

    def __init__(self, kvm: Kvm, vm_id: str) -> None:
        self.kvm = kvm
        self.id = vm_id
        self._caller = kvm._caller

    def __repr__(self) -> str:
        return f"Vm({self.id!r})"

    def check_extension(self, cap: int) -> Any:
        return self._caller.unary("CheckExtension",
                                  pb.CheckExtensionRequest(cap=cap, vm_id=self.id),
                                  lambda r: r.value)

    def enable_cap(self, cap: int, flags: int = 0, args: Sequence[int] = ()) -> Any:
        """KVM_ENABLE_CAP on the VM."""
        return self._caller.unary("EnableCap", pb.EnableCapRequest(
            vm_id=self.id, cap=cap, flags=flags, args=list(args)), _none)

    def set_user_memory_region(self, slot: int, guest_phys_addr: int, memory_size: int,
                               flags: int = 0, userspace_addr: int = 0) -> Any:
        """KVM_SET_USER_MEMORY_REGION (the server owns the memory)."""
        return self._caller.unary("SetUserMemoryRegion", pb.SetUserMemoryRegionRequest(
            vm_id=self.id, slot=slot, flags=flags, guest_phys_addr=guest_phys_addr,
            memory_size=memory_size, userspace_addr=userspace_addr), _none)

    def get_dirty_log(self, slot: int) -> Any:
        return self._caller.unary("GetDirtyLog", pb.GetDirtyLogRequest(vm_id=self.id, slot=slot),
                                  lambda r: r.bitmap)

    def read_memory(self, gpa: int, size: int) -> Any:
        """Guest-physical memory (streamed in chunks when large)."""
        request = pb.ReadMemoryRequest(vm_id=self.id, gpa=gpa, size=size)
        if size <= self.kvm.max_transfer:
            return self._caller.unary("ReadMemory", request, lambda r: r.data)
        return self._caller.server_stream("ReadMemoryStream", request,
                                          lambda chunks: b"".join(c.data for c in chunks))

    def write_memory(self, gpa: int, data: bytes) -> Any:
        """Write guest-physical memory (streamed in chunks when large)."""
        data = bytes(data)
        step = self.kvm.max_transfer
        if len(data) <= step:
            return self._caller.unary(
                "WriteMemory", pb.WriteMemoryRequest(vm_id=self.id, gpa=gpa, data=data), _none)
        chunks = (pb.WriteMemoryRequest(vm_id=self.id, gpa=gpa + i, data=data[i:i + step])
                  for i in range(0, len(data), step))
        return self._caller.client_stream("WriteMemoryStream", chunks, _none)

    def create_vcpu(self, vcpu_id: int) -> Any:
        return self._caller.unary("CreateVcpu",
                                  pb.CreateVcpuRequest(vm_id=self.id, vcpu_id=vcpu_id),
                                  lambda r: Vcpu(self, vcpu_id))

    def vcpu(self, vcpu_id: int) -> Vcpu:
        """A handle on an existing vCPU."""
        return Vcpu(self, vcpu_id)

    def destroy(self) -> Any:
        return self._caller.unary("DestroyVm", pb.DestroyVmRequest(vm_id=self.id), _none)

    def batch_one_reg(self, ops: Sequence[Tuple[int, Reg, Optional[bytes]]],
                      stop_on_error: bool = False) -> Any:
        """Many ONE_REG accesses in one call: ``ops`` are (vcpu_id, reg,
        value) with value None for a get. Returns one item per applied op:
        the value read (get), None (set) or the ``KvmError`` of that op."""
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

    def run_many(self, vcpus: Sequence[Vcpu], budget: int = 0, idle_timeout: float = 0.0) -> Any:
        """Run several vCPUs concurrently (each answers its own last exit);
        returns an ``Exit`` or a ``KvmError`` per vCPU, in order."""
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
    """A vCPU; one method per vCPU ioctl."""

    def __init__(self, vm: Vm, vcpu_id: int) -> None:
        self.vm = vm
        self.id = vcpu_id
        self.ref = pb.VcpuRef(vm_id=vm.id, vcpu_id=vcpu_id)
        self._caller = vm._caller
        self.last_exit: Optional[X.Exit] = None  # answered by the next run()

    def __repr__(self) -> str:
        return f"Vcpu({self.vm.id!r}, {self.id})"

    # ONE_REG

    def get_one_reg(self, reg: Reg) -> Any:
        """KVM_GET_ONE_REG: little-endian bytes."""
        return self._caller.unary("GetOneReg", pb.GetOneRegRequest(vcpu=self.ref, id=reg_id(reg)),
                                  lambda r: r.value)

    def set_one_reg(self, reg: Reg, value: bytes) -> Any:
        """KVM_SET_ONE_REG with little-endian bytes of the id's size."""
        return self._caller.unary(
            "SetOneReg", pb.SetOneRegRequest(vcpu=self.ref, id=reg_id(reg), value=bytes(value)),
            _none)

    def get_reg(self, reg: Reg) -> Any:
        """``get_one_reg`` as an unsigned integer."""
        return self._caller.unary("GetOneReg", pb.GetOneRegRequest(vcpu=self.ref, id=reg_id(reg)),
                                  lambda r: int.from_bytes(r.value, "little"))

    def set_reg(self, reg: Reg, value: int) -> Any:
        """``set_one_reg`` from an integer (truncated to the id's size)."""
        rid = reg_id(reg)
        size = reg_size(rid)
        data = (value & ((1 << (8 * size)) - 1)).to_bytes(size, "little")
        return self.set_one_reg(rid, data)

    def get_reg_list(self, n: Optional[int] = None) -> Any:
        """KVM_GET_REG_LIST: ids in Linux's order (E2BIG if ``n`` is too small)."""
        return self._caller.unary("GetRegList", pb.GetRegListRequest(vcpu=self.ref, n=n),
                                  lambda r: list(r.ids))

    def get_reg_names(self) -> Any:
        """(id, short name) for every register of KVM_GET_REG_LIST."""
        return self._caller.unary("GetRegList", pb.GetRegListRequest(vcpu=self.ref),
                                  lambda r: list(zip(r.ids, r.names)))

    # KVM_RUN

    def _run_request(self, budget: int, idle_timeout: float) -> pb.RunRequest:
        request = pb.RunRequest(vcpu=self.ref, budget=budget,
                                idle_timeout_ms=int(idle_timeout * 1000))
        completion = self.last_exit.completion() if self.last_exit is not None else None
        if completion is not None:
            request.completion.CopyFrom(completion)
        return request

    def _took(self, msg: pb.Exit) -> X.Exit:
        self.last_exit = X.from_pb(msg)
        return self.last_exit

    def run(self, budget: int = 0, idle_timeout: float = 0.0,
            timeout: Optional[float] = None) -> Any:
        """KVM_RUN: answers ``last_exit`` and returns the next exit.
        ``budget``: instructions (0: none); ``idle_timeout``: seconds idle
        before an INTR exit (0: wait until woken); ``timeout``: RPC deadline
        (the server kicks the vCPU when it passes)."""
        return self._caller.unary("Run", self._run_request(budget, idle_timeout), self._took,
                                  timeout=timeout)

    def run_stream(self) -> Any:
        """A ``RunStream`` session: its ``run()`` is this vCPU's ``run()``
        over one bidirectional stream (no call setup per exit)."""
        if self._caller.is_async:
            return AsyncRunStream(self)
        return RunStream(self)

    # the other vCPU ioctls

    def interrupt(self, irq: int = KVM_INTERRUPT_SET) -> Any:
        return self._caller.unary("Interrupt", pb.InterruptRequest(vcpu=self.ref, irq=irq), _none)

    def get_mp_state(self) -> Any:
        return self._caller.unary("GetMpState", pb.GetMpStateRequest(vcpu=self.ref),
                                  lambda r: r.mp_state)

    def set_mp_state(self, mp_state: int) -> Any:
        return self._caller.unary("SetMpState",
                                  pb.SetMpStateRequest(vcpu=self.ref, mp_state=mp_state), _none)

    def set_guest_debug(self, control: int) -> Any:
        return self._caller.unary("SetGuestDebug",
                                  pb.SetGuestDebugRequest(vcpu=self.ref, control=control), _none)

    def kick(self) -> Any:
        return self._caller.unary("Kick", pb.KickRequest(vcpu=self.ref), _none)

    def get_fwft(self, feature_id: int) -> Any:
        """``FwftState`` (enable, flags, value) of an SBI FWFT feature."""
        return self._caller.unary("GetFwft",
                                  pb.GetFwftRequest(vcpu=self.ref, feature_id=feature_id))

    def set_fwft(self, feature_id: int, enable: Optional[bool] = None,
                 value: Optional[int] = None, flags: Optional[int] = None) -> Any:
        """Set the given fields (enable, then value, then flags)."""
        return self._caller.unary("SetFwft", pb.SetFwftRequest(
            vcpu=self.ref, feature_id=feature_id, enable=enable, value=value, flags=flags))


class RunStream:
    """Blocking ``RunStream`` session (sync channel). Use as a context manager."""

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

    def run(self, budget: int = 0, idle_timeout: float = 0.0) -> X.Exit:
        with self._lock:
            self._requests.put(self._vcpu._run_request(budget, idle_timeout))
            try:
                return self._vcpu._took(next(self._responses))
            except grpc.RpcError as err:
                raise KvmError.from_rpc_error(err) from None

    def close(self) -> None:
        self._requests.put(self._END)

    def __enter__(self) -> RunStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncRunStream:
    """``RunStream`` session on an asyncio channel. Use ``async with``."""

    def __init__(self, vcpu: Vcpu) -> None:
        self._vcpu = vcpu
        self._call = vcpu._caller.stub.RunStream()

    async def run(self, budget: int = 0, idle_timeout: float = 0.0) -> X.Exit:
        try:
            await self._call.write(self._vcpu._run_request(budget, idle_timeout))
            return self._vcpu._took(await self._call.read())
        except grpc.RpcError as err:
            raise KvmError.from_rpc_error(err) from None

    async def close(self) -> None:
        await self._call.done_writing()

    async def __aenter__(self) -> AsyncRunStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
