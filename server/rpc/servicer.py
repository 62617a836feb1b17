"""The ``rvkvm.v1.Kvm`` servicer: message in, call the KVM model, message out.

Model calls that may block (they take the vCPU mutex, which a running vCPU
holds for one slice) run in a thread pool, so the event loop stays free;
``Run`` runs its slices through the registry's ``FairScheduler``, with the
VM's tenant as the owner whose turn a slice waits for. Limits are checked
(``limits``) before any work; long requests (batches, streams) are done in
pieces with an await between them, so they stop when the caller goes away.
Errors are ``KvmError``s, turned into statuses by
``interceptors.KvmErrorInterceptor``.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import itertools
from concurrent.futures import ThreadPoolExecutor
from typing import Any, AsyncIterator, Callable, Hashable, List, Optional, Tuple, TypeAlias, TypeVar

import grpc

from rvkvm.server.kvm import KvmError, Vcpu, copy_reg_list, short_name
from rvkvm.server.kvm.stats import VCPU_STATS, VM_STATS
from rvkvm.server.kvm.vcpu import BUSY
from rvkvm.v1 import kvm_pb2 as pb
from rvkvm.v1 import kvm_pb2_grpc as pb_grpc

from . import convert
from .calls import current
from .errors import OK, kvm_errno
from .limits import RequestLimits
from .metrics import Metrics
from .quotas import Ledger
from .registry import Pacing, VcpuSession, VmEntry, VmRegistry

# BatchOneReg ops per model call (the caller's cancellation is seen between them).
BATCH_CHUNK = 128

T = TypeVar("T")
Context: TypeAlias = grpc.aio.ServicerContext


class KvmServicer(pb_grpc.KvmServicer):
    def __init__(self, registry: VmRegistry, limits: RequestLimits, max_vms: int,
                 pacing: Pacing, ops_pool: ThreadPoolExecutor,
                 ledger: Optional[Ledger] = None, metrics: Optional[Metrics] = None,
                 lease: float = 0.0) -> None:
        self._registry = registry
        self._ledger = ledger or Ledger()
        self._metrics = metrics
        self._lease = lease
        self._system = registry.system
        self._limits = limits
        self._max_vms = max_vms
        self._pacing = pacing
        self._ops_pool = ops_pool

    # -- helpers ---------------------------------------------------------

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        aio = getattr(fn, "aio", None)  # a call into a worker process: no thread needed
        if aio is not None:
            return await aio(*args)  # type: ignore[no-any-return]
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._ops_pool, functools.partial(fn, *args))

    async def _quick(self, fn: Callable[..., T], *args: Any) -> T:
        """A model call that never waits for a vCPU, made on the event loop
        (into a worker process: not without waiting for its reply)."""
        if getattr(getattr(fn, "__self__", fn), "in_worker", False) or hasattr(fn, "aio"):
            return await self._call(fn, *args)
        return fn(*args)

    async def _vcpu_call(self, vcpu: Vcpu, ioctl: Callable[..., T], *args: Any) -> T:
        """A vCPU ioctl (microseconds of work): on the event loop at once
        when the vCPU is between slices, on an ops thread only while a
        slice holds it, so that register calls never queue behind run
        traffic for a thread and two interpreter-lock hand-offs."""
        if getattr(vcpu, "in_worker", False):  # the worker answers between slices itself
            return await self._call(ioctl, *args)
        result = vcpu.call_nowait(ioctl, *args)
        if result is BUSY:
            return await self._call(ioctl, *args)
        return result  # type: ignore[return-value]

    def _vm(self, vm_id: str) -> VmEntry:
        """The one lookup of a VM by a call: only the calling tenant's VMs
        are found (another's fails as an unknown id does); the call holds
        the VM's lease until it ends."""
        call = current()
        entry = self._registry.get(vm_id, call.tenant.name)
        call.hold(entry)
        return entry

    def _session(self, ref: pb.VcpuRef) -> VcpuSession:
        return self._vm_session(ref)[1]

    def _vm_session(self, ref: pb.VcpuRef) -> Tuple[VmEntry, VcpuSession]:
        entry = self._vm(ref.vm_id)
        current().vcpu_id = ref.vcpu_id
        return entry, entry.session(ref.vcpu_id)

    @staticmethod
    def _owner(entry: VmEntry) -> Hashable:
        """Whose turn a Run's slices wait for: the tenant owning the VM, so
        that busy vCPUs of one tenant share run time with every other
        tenant's, round-robin (on an open server: all one tenant)."""
        return entry.owner

    async def _run(self, session: VcpuSession, request: pb.RunRequest,
                   owner: Hashable, reserve: bool = True) -> pb.Exit:
        """One KVM_RUN (``interrupt`` applied first, as a VMM calls
        KVM_INTERRUPT then KVM_RUN), its slices taking turns as ``owner``,
        with its number and the coalesced-MMIO ring entries drained when the
        exit happened (they precede it); counted against the tenant's runs
        quota (``reserve`` False: the caller reserved it) and in the metrics."""
        tenant = current().tenant
        with self._ledger.runs(tenant) if reserve else contextlib.nullcontext():
            if request.HasField("interrupt"):
                session.vcpu.interrupt(request.interrupt)
            instret, slices = session.vcpu.hart.instret, session.slices
            delivery = await session.run(request.completion, request.budget,
                                         request.idle_timeout_ms / 1000, owner)
        if self._metrics is not None:
            self._metrics.exit(tenant.name, delivery.exit.reason,
                               session.vcpu.hart.instret - instret)
            self._metrics.run_slices.inc(session.slices - slices)
        return convert.exit_to_pb(delivery.exit, delivery.seq, delivery.coalesced)

    # -- system ----------------------------------------------------------

    async def GetApiVersion(self, request: pb.GetApiVersionRequest,
                            context: Context) -> pb.GetApiVersionResponse:
        return pb.GetApiVersionResponse(version=self._system.get_api_version())

    async def CheckExtension(self, request: pb.CheckExtensionRequest,
                             context: Context) -> pb.CheckExtensionResponse:
        target: Any = self._vm(request.vm_id).vm_alive() if request.vm_id else self._system
        return pb.CheckExtensionResponse(value=await self._quick(target.check_extension,
                                                                 request.cap))

    async def GetHostInfo(self, request: pb.GetHostInfoRequest, context: Context) -> pb.HostInfo:
        info = convert.host_info(self._system.host, self._limits, self._max_vms,
                                 self._pacing.run_slice, self._pacing.slice_time)
        info.limits.max_memory = self._ledger.max_memory
        convert.fill_clock(self._system.clock, info.default_clock,
                           self._system.host.timebase_frequency)
        if self._lease > 0:
            info.limits.lease.FromNanoseconds(int(self._lease * 1e9))
        return info

    async def CreateVm(self, request: pb.CreateVmRequest,
                       context: Context) -> pb.CreateVmResponse:
        call = current()
        owner = call.tenant.name
        entry = await self._call(
            self._ledger.create_vm, call.tenant,
            lambda: self._registry.create(request.machine_type, request.abi_profile, owner,
                                          convert.guest_clock(request, self._system.clock)),
            lambda e: e.vm_id)
        call.vm_id = entry.vm_id
        return pb.CreateVmResponse(vm_id=entry.vm_id)

    async def DestroyVm(self, request: pb.DestroyVmRequest,
                        context: Context) -> pb.DestroyVmResponse:
        call = current()
        call.vm_id = request.vm_id
        await self._call(self._registry.destroy, request.vm_id, call.tenant.name)
        return pb.DestroyVmResponse()

    async def ListVms(self, request: pb.ListVmsRequest,
                      context: Context) -> pb.ListVmsResponse:
        tenant = current().tenant
        response = pb.ListVmsResponse(tenant=tenant.name)
        quota, usage = tenant.quota, self._ledger.usage(tenant.name)
        response.quota.CopyFrom(pb.QuotaAmounts(
            vms=quota.max_vms, vcpus=quota.max_vcpus, memory_bytes=quota.max_memory,
            runs=quota.max_runs))
        response.usage.CopyFrom(pb.QuotaAmounts(
            vms=usage.vms, vcpus=usage.vcpus, memory_bytes=usage.memory, runs=usage.runs))
        for entry in sorted(self._registry.list(tenant.name), key=lambda e: e.created):
            info = response.vms.add(vm_id=entry.vm_id, vcpu_ids=entry.vcpu_ids(),
                                    memory_bytes=self._ledger.vm_memory(entry.vm_id),
                                    open_calls=entry.lease.holds)
            info.create_time.FromNanoseconds(int(entry.created * 1e9))
            info.last_use_time.FromNanoseconds(int(entry.lease.last_used_wall * 1e9))
            idle = entry.lease.idle()
            if self._lease > 0 and idle is not None:
                expires = entry.lease.last_used_wall + self._lease
                info.expire_time.FromNanoseconds(int(expires * 1e9))
        return response

    # -- VM --------------------------------------------------------------

    async def EnableCap(self, request: pb.EnableCapRequest,
                        context: Context) -> pb.EnableCapResponse:
        vm = self._vm(request.vm_id).vm
        await self._call(vm.enable_cap, request.cap, request.flags, tuple(request.args))
        return pb.EnableCapResponse()

    async def SetUserMemoryRegion(self, request: pb.SetUserMemoryRegionRequest,
                                  context: Context) -> pb.SetUserMemoryRegionResponse:
        entry = self._vm(request.vm_id)
        vm = entry.vm
        slot_id = request.slot & 0xFFFF if request.slot >> 16 == 0 else -1

        def old_size() -> int:
            return next((s.memory_size for s in vm.slots() if s.slot == slot_id), 0)

        def change() -> None:
            vm.set_user_memory_region(request.slot, request.flags, request.guest_phys_addr,
                                      request.memory_size, request.userspace_addr)

        await self._call(self._ledger.change_memory, current().tenant, entry.vm_id,
                         old_size, request.memory_size, change)
        return pb.SetUserMemoryRegionResponse()

    async def GetDirtyLog(self, request: pb.GetDirtyLogRequest,
                          context: Context) -> pb.GetDirtyLogResponse:
        vm = self._vm(request.vm_id).vm
        # the bitmap must fit in a reply: refused before the log is harvested
        self._limits.check_reply(next(((s.npages + 63) // 64 * 8 for s in vm.slots()
                                       if s.slot == request.slot & 0xFFFF), 0))
        return pb.GetDirtyLogResponse(bitmap=await self._call(vm.get_dirty_log, request.slot))

    async def ReadMemory(self, request: pb.ReadMemoryRequest,
                         context: Context) -> pb.ReadMemoryResponse:
        vm = self._vm(request.vm_id).vm
        self._limits.check_transfer(request.size)
        return pb.ReadMemoryResponse(data=await self._call(vm.read_memory, request.gpa,
                                                           request.size))

    async def WriteMemory(self, request: pb.WriteMemoryRequest,
                          context: Context) -> pb.WriteMemoryResponse:
        vm = self._vm(request.vm_id).vm
        self._limits.check_transfer(len(request.data))
        await self._call(vm.write_memory, request.gpa, request.data)
        return pb.WriteMemoryResponse(bytes_written=len(request.data))

    async def ReadMemoryStream(self, request: pb.ReadMemoryRequest,
                               context: Context) -> AsyncIterator[pb.MemoryChunk]:
        vm = self._vm(request.vm_id).vm
        gpa, end = request.gpa, request.gpa + request.size
        await self._call(vm.check_range, gpa, request.size)  # EFAULT before any chunk
        while gpa < end:
            n = min(self._limits.max_transfer, end - gpa)
            yield pb.MemoryChunk(gpa=gpa, data=await self._call(vm.read_memory, gpa, n))
            gpa += n

    async def WriteMemoryStream(self, request_iterator: AsyncIterator[pb.WriteMemoryRequest],
                                context: Context) -> pb.WriteMemoryResponse:
        written = 0
        async for chunk in request_iterator:
            vm = self._vm(chunk.vm_id).vm
            self._limits.check_transfer(len(chunk.data))
            await self._call(vm.write_memory, chunk.gpa, chunk.data)
            written += len(chunk.data)
        return pb.WriteMemoryResponse(bytes_written=written)

    async def CreateVcpu(self, request: pb.CreateVcpuRequest,
                         context: Context) -> pb.CreateVcpuResponse:
        entry = self._vm(request.vm_id)
        entry.vm_alive()
        current().vcpu_id = request.vcpu_id
        await self._call(self._ledger.create_vcpu, current().tenant, entry.vm_id,
                         lambda: entry.create_vcpu(request.vcpu_id))
        return pb.CreateVcpuResponse(vcpu=pb.VcpuRef(vm_id=request.vm_id,
                                                     vcpu_id=request.vcpu_id))

    # -- vCPU ------------------------------------------------------------

    async def GetOneReg(self, request: pb.GetOneRegRequest,
                        context: Context) -> pb.GetOneRegResponse:
        vcpu = self._session(request.vcpu).vcpu
        return pb.GetOneRegResponse(value=await self._vcpu_call(vcpu, vcpu.get_one_reg,
                                                                 request.id))

    async def SetOneReg(self, request: pb.SetOneRegRequest,
                        context: Context) -> pb.SetOneRegResponse:
        vcpu = self._session(request.vcpu).vcpu
        await self._vcpu_call(vcpu, vcpu.set_one_reg, request.id, request.value)
        return pb.SetOneRegResponse()

    async def GetRegList(self, request: pb.GetRegListRequest,
                         context: Context) -> pb.GetRegListResponse:
        vcpu = self._session(request.vcpu).vcpu
        ids = await self._vcpu_call(vcpu, vcpu.get_reg_list)
        if request.HasField("n"):
            ids = copy_reg_list(request.n, ids)
        return pb.GetRegListResponse(ids=ids, names=[short_name(i) for i in ids])

    async def Run(self, request: pb.RunRequest, context: Context) -> pb.Exit:
        entry, session = self._vm_session(request.vcpu)
        return await self._run(session, request, self._owner(entry))

    async def RunStream(self, request_iterator: AsyncIterator[pb.RunRequest],
                        context: Context) -> AsyncIterator[pb.Exit]:
        async for request in request_iterator:
            entry, session = self._vm_session(request.vcpu)
            yield await self._run(session, request, self._owner(entry))

    async def Interrupt(self, request: pb.InterruptRequest,
                        context: Context) -> pb.InterruptResponse:
        self._session(request.vcpu).vcpu.interrupt(request.irq)
        return pb.InterruptResponse()

    async def GetMpState(self, request: pb.GetMpStateRequest, context: Context) -> pb.MpState:
        vcpu = self._session(request.vcpu).vcpu
        return pb.MpState(mp_state=await self._quick(vcpu.get_mp_state))

    async def SetMpState(self, request: pb.SetMpStateRequest,
                         context: Context) -> pb.SetMpStateResponse:
        vcpu = self._session(request.vcpu).vcpu
        await self._vcpu_call(vcpu, vcpu.set_mp_state, request.mp_state)
        return pb.SetMpStateResponse()

    async def SetGuestDebug(self, request: pb.SetGuestDebugRequest,
                            context: Context) -> pb.SetGuestDebugResponse:
        vcpu = self._session(request.vcpu).vcpu
        await self._vcpu_call(vcpu, vcpu.set_guest_debug, request.control)
        return pb.SetGuestDebugResponse()

    async def Kick(self, request: pb.KickRequest, context: Context) -> pb.KickResponse:
        self._session(request.vcpu).vcpu.kick()
        return pb.KickResponse()

    async def GetFwft(self, request: pb.GetFwftRequest, context: Context) -> pb.FwftState:
        vcpu = self._session(request.vcpu).vcpu
        return await self._vcpu_call(vcpu, _get_fwft, vcpu, request.feature_id)

    async def SetFwft(self, request: pb.SetFwftRequest, context: Context) -> pb.FwftState:
        vcpu = self._session(request.vcpu).vcpu
        feature = convert.fwft_feature(request.feature_id)
        for field, index in (("enable", convert.FWFT_ENABLE), ("value", convert.FWFT_VALUE),
                             ("flags", convert.FWFT_FLAGS)):
            if request.HasField(field):
                value = int(getattr(request, field))
                await self._vcpu_call(vcpu, vcpu.set_value,
                                      convert.fwft_reg_id(feature, index), value)
        return await self._vcpu_call(vcpu, _get_fwft, vcpu, request.feature_id)

    # -- coalesced MMIO --------------------------------------------------

    async def RegisterCoalescedMmio(self, request: pb.RegisterCoalescedMmioRequest,
                                    context: Context) -> pb.RegisterCoalescedMmioResponse:
        vm = self._vm(request.vm_id).vm
        zone = request.zone
        await self._call(vm.register_coalesced_mmio, zone.addr, zone.size, zone.pio)
        return pb.RegisterCoalescedMmioResponse()

    async def UnregisterCoalescedMmio(self, request: pb.UnregisterCoalescedMmioRequest,
                                      context: Context) -> pb.UnregisterCoalescedMmioResponse:
        vm = self._vm(request.vm_id).vm
        zone = request.zone
        await self._call(vm.unregister_coalesced_mmio, zone.addr, zone.size, zone.pio)
        return pb.UnregisterCoalescedMmioResponse()

    async def DrainCoalescedMmio(self, request: pb.DrainCoalescedMmioRequest,
                                 context: Context) -> pb.DrainCoalescedMmioResponse:
        entries = await self._quick(self._vm(request.vm_id).vm.drain_coalesced_mmio)
        return pb.DrainCoalescedMmioResponse(entries=convert.coalesced_to_pb(entries))

    # -- statistics ------------------------------------------------------

    async def GetStats(self, request: pb.GetStatsRequest, context: Context) -> pb.Stats:
        if request.WhichOneof("target") == "vcpu":
            ref = request.vcpu
            vcpu = self._session(ref).vcpu
            return convert.stats_to_pb(f"kvm-{ref.vm_id}/vcpu_{ref.vcpu_id}", VCPU_STATS,
                                       await self._quick(vcpu.stats))
        entry = self._vm(request.vm_id)
        return convert.stats_to_pb(f"kvm-{entry.vm_id}", VM_STATS,
                                   await self._quick(entry.vm_alive().stats))

    # -- batch -----------------------------------------------------------

    async def BatchOneReg(self, request: pb.BatchOneRegRequest,
                          context: Context) -> pb.BatchOneRegResponse:
        entry = self._vm(request.vm_id)
        entry.vm_alive()
        self._limits.check_batch(len(request.ops))
        ops = list(request.ops)
        results: List[pb.RegResult] = []
        for first in range(0, len(ops), BATCH_CHUNK):
            done = await self._call(_batch_one_reg, entry, ops[first:first + BATCH_CHUNK],
                                    request.stop_on_error)
            results.extend(done)
            if request.stop_on_error and done and done[-1].status.errno:
                break
        return pb.BatchOneRegResponse(results=results)

    async def RunMany(self, request: pb.RunManyRequest,
                      context: Context) -> pb.RunManyResponse:
        entry = self._vm(request.vm_id)
        self._registry.lifecycle.check_serving()
        ids = [run.vcpu.vcpu_id for run in request.runs]
        if len(set(ids)) != len(ids):
            raise KvmError(errno.EINVAL, "RunMany names a vCPU more than once")
        sessions = [entry.session(i) for i in ids]
        owner = self._owner(entry)
        with self._ledger.runs(current().tenant, len(sessions)):
            outcomes = await asyncio.gather(
                *(self._run(s, run, owner, reserve=False)
                  for s, run in zip(sessions, request.runs)),
                return_exceptions=True)
        results: List[pb.RunResult] = []
        for vcpu_id, outcome in zip(ids, outcomes):
            if isinstance(outcome, KvmError):
                results.append(pb.RunResult(vcpu_id=vcpu_id, status=kvm_errno(outcome)))
            elif isinstance(outcome, BaseException):
                raise outcome
            else:
                results.append(pb.RunResult(vcpu_id=vcpu_id, status=OK, exit=outcome))
        return pb.RunManyResponse(results=results)


def _get_fwft(vcpu: Any, feature_id: int) -> pb.FwftState:
    feature = convert.fwft_feature(feature_id)
    enable, flags, value = (vcpu.get_value(convert.fwft_reg_id(feature, i))
                            for i in (convert.FWFT_ENABLE, convert.FWFT_FLAGS,
                                      convert.FWFT_VALUE))
    return pb.FwftState(feature_id=feature_id, name=feature.name, enable=bool(enable),
                        flags=flags, value=value)


def _batch_one_reg(entry: VmEntry, ops: List[pb.RegOp],
                   stop_on_error: bool) -> List[pb.RegResult]:
    if getattr(entry.vm, "in_worker", False):
        return _batch_in_worker(entry, ops, stop_on_error)
    results = []
    for op in ops:
        try:
            vcpu = entry.session(op.vcpu_id).vcpu
            if op.HasField("set_value"):
                vcpu.set_one_reg(op.id, op.set_value)
                results.append(pb.RegResult(status=OK))
            else:
                results.append(pb.RegResult(status=OK, value=vcpu.get_one_reg(op.id)))
        except KvmError as err:
            results.append(pb.RegResult(status=kvm_errno(err)))
            if stop_on_error:
                break
    return results



def _batch_in_worker(entry: VmEntry, ops: List[pb.RegOp],
                     stop_on_error: bool) -> List[pb.RegResult]:
    """``_batch_one_reg`` for a VM in a worker process: each run of
    consecutive ops on one vCPU is one round trip (``VcpuProxy.batch_one_reg``)."""
    results: List[pb.RegResult] = []
    for vcpu_id, group in itertools.groupby(ops, key=lambda op: op.vcpu_id):
        items = list(group)
        try:
            vcpu: Any = entry.session(vcpu_id).vcpu
        except KvmError as err:
            results.append(pb.RegResult(status=kvm_errno(err)))
            if stop_on_error:
                break
            results.extend(pb.RegResult(status=kvm_errno(err)) for _ in items[1:])
            continue
        done = vcpu.batch_one_reg([(op.id, op.set_value if op.HasField("set_value") else None)
                                   for op in items], stop_on_error)
        for code, value in done:
            if code:
                results.append(pb.RegResult(status=kvm_errno(value)))
            elif value is None:
                results.append(pb.RegResult(status=OK))
            else:
                results.append(pb.RegResult(status=OK, value=value))
        if stop_on_error and done and done[-1][0]:
            break
    return results
