"""Per-call state and the ``CallInterceptor``: authentication, the VM
lease a call holds, one structured log line and the gRPC metrics per RPC.

The interceptor authenticates the call (a tenants file: bearer token or
mTLS client certificate; none: the open tenant), then runs the handler with
a ``Call`` in the context variable ``CURRENT``. The servicer's one VM
lookup records the VM and vCPU ids in it and holds the VM's lease until the
call ends. When it ends the interceptor logs, at info level::

    {"event": "rpc", "method": "/rvkvm.v1.Kvm/Run", "code": "OK", "duration_ms": 12.3,
     "request_id": "...", "tenant": "ci-team-a", "peer": "ipv4:127.0.0.1:41234",
     "vm_id": "vm-...", "vcpu_id": 0, "level": "info", "timestamp": "..."}

(``request_id`` is the caller's ``x-request-id`` metadata when it sends a
sane one, else a new UUID; it is bound to every log line of the call and
sent back as ``x-request-id`` in the response's trailing metadata), and
counts it in the metrics. A failed call's line says why (``errno``,
``error``): a malformed request is logged there, once.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import errno
import logging
import random
import re
import time
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Dict, List, Optional, Tuple

import grpc
import structlog

from rvkvm.server.kvm import KvmError

from .errors import status_code, to_status
from .interceptors import REQUEST_ID, _AroundInterceptor, wrap_handler
from .limits import MAX_ERROR_MESSAGE
from .metrics import Metrics, rpc_type, split_method
from .tenants import OPEN, Tenant, Tenants

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:/+=-]{1,128}$")
_IDS = random.Random()  # seeded from os.urandom
# RFC 4122 version 4: the version nibble (bits 76-79) is 4, the variant
# (bits 62-63) is 0b10; every other bit random
_UUID4_KEEP = ~((0xF << 76) | (0x3 << 62)) & ((1 << 128) - 1)
_UUID4_SET = (0x4 << 76) | (0x2 << 62)


@dataclass
class Call:
    method: str
    tenant: Tenant = OPEN
    request_id: str = ""
    vm_id: str = ""
    vcpu_id: Optional[int] = None
    held: List[Any] = field(default_factory=list)

    def hold(self, entry: Any) -> None:
        """Hold ``entry``'s lease until the call ends (once per VM)."""
        if self.vm_id == "":
            self.vm_id = entry.vm_id
        if not any(e is entry for e in self.held):
            entry.lease.hold()
            self.held.append(entry)

    def release(self) -> None:
        held, self.held = self.held, []
        for entry in held:
            entry.lease.release()


CURRENT: contextvars.ContextVar[Optional[Call]] = contextvars.ContextVar(
    "rvkvm_call", default=None)


def current() -> Call:
    """The running call (a servicer used without the interceptor: open)."""
    call = CURRENT.get()
    if call is None:
        call = Call("")
        CURRENT.set(call)
    return call


def _metadata(context: grpc.aio.ServicerContext) -> List[Any]:
    return list(context.invocation_metadata() or ())


def _request_id(metadata: List[Any]) -> str:
    for key, value in metadata:
        if key == REQUEST_ID:
            text = value.decode("latin-1") if isinstance(value, bytes) else str(value)
            if _REQUEST_ID.match(text):
                return text
            break
    # a version-4 UUID from a PRNG seeded once: uuid4() reads os.urandom
    # per call, a system call that gives up the interpreter lock (and waits
    # to take it back) on every RPC; its hex form made here directly
    # (uuid.UUID's checks cost 10 us of the event loop's time per call)
    return "%032x" % (_IDS.getrandbits(128) & _UUID4_KEEP | _UUID4_SET)


class CallInterceptor(_AroundInterceptor):
    """Authenticate, bind the call's fields, log and measure every rvkvm.v1 RPC."""

    def __init__(self, tenants: Optional[Tenants], metrics: Optional[Metrics] = None,
                 logger: Optional[Any] = None) -> None:
        self._tenants = tenants
        self._metrics = metrics
        self._log = logger or structlog.get_logger("rvkvm.rpc")
        self._types: Dict[str, str] = {}
        # the metrics' labelled children, looked up once per method (and
        # code) instead of through ``labels()`` on every call
        self._children: Dict[str, Tuple[Any, Any]] = {}
        self._handled: Dict[Tuple[str, str], Any] = {}

    def wrap(self, handler: grpc.RpcMethodHandler, method: str) -> grpc.RpcMethodHandler:
        self._types[method] = rpc_type(handler.request_streaming, handler.response_streaming)
        return wrap_handler(handler, method, self.around)

    @contextlib.asynccontextmanager
    async def around(self, method: str,
                     context: grpc.aio.ServicerContext) -> AsyncIterator[None]:
        start = time.perf_counter()
        metadata = _metadata(context)
        # Read the peer now: touching the context after the call is torn
        # down (a closed stream being finalised) can crash grpc's core.
        peer = context.peer()
        call = Call(method, request_id=_request_id(metadata))
        token = CURRENT.set(call)
        bound = structlog.contextvars.bind_contextvars(request_id=call.request_id)
        children = self._children.get(method)
        if children is None and self._metrics is not None:
            service, name = split_method(method)
            kind = self._types.get(method, "unary")
            children = (self._metrics.started.labels(service, name, kind),
                        self._metrics.handling.labels(service, name, kind))
            self._children[method] = children
        if children is not None:
            children[0].inc()
        code = grpc.StatusCode.OK
        level = "info"
        errno_name = error = ""
        try:
            # the request id goes back in the trailers, which every call
            # sends anyway: headers of their own would be one more batch
            # (a sixth of a small call's server CPU)
            context.set_trailing_metadata(((REQUEST_ID, call.request_id),))
            tenant = self._authenticate(metadata, context)
            if tenant is None:
                code = grpc.StatusCode.UNAUTHENTICATED
                if self._metrics is not None:
                    self._metrics.unauthenticated.inc()
                await context.abort_with_status(to_status(
                    KvmError(errno.EACCES, "missing or invalid credentials: send "
                             "'authorization: Bearer <token>' metadata"), code,
                    trailing=((REQUEST_ID, call.request_id),)))
                return  # abort raised
            call.tenant = tenant
            yield
        except KvmError as err:
            code, errno_name, error = status_code(err), err.name, err.message[:MAX_ERROR_MESSAGE]
            raise
        except asyncio.CancelledError:
            code = grpc.StatusCode.CANCELLED
            raise
        except Exception as exc:
            if code == grpc.StatusCode.OK:  # not our own abort
                code, level = _code_of(exc, context), "error"
            raise
        except BaseException:  # GeneratorExit: the client closed the stream
            code = grpc.StatusCode.CANCELLED
            raise
        finally:
            if code == grpc.StatusCode.OK and _cancelled(context):
                # the client went away; its request stream just ended
                code = grpc.StatusCode.CANCELLED
            call.release()
            seconds = time.perf_counter() - start
            if children is not None:
                handled = self._handled.get((method, code.name))
                if handled is None:
                    service, name = split_method(method)
                    handled = self._metrics.handled.labels(  # type: ignore[union-attr]
                        service, name, self._types.get(method, "unary"), code.name)
                    self._handled[(method, code.name)] = handled
                handled.inc()
                children[1].observe(seconds)
            if level != "info" or _enabled(self._log, logging.INFO):
                fields: Dict[str, Any] = {
                    "method": method, "code": code.name,
                    "duration_ms": round(seconds * 1000, 3), "request_id": call.request_id,
                    "tenant": call.tenant.name, "peer": peer}
                if errno_name:
                    fields["errno"] = errno_name
                    fields["error"] = error
                if call.vm_id:
                    fields["vm_id"] = call.vm_id
                if call.vcpu_id is not None:
                    fields["vcpu_id"] = call.vcpu_id
                getattr(self._log, level)("rpc", **fields)
            # A response stream the client dropped is closed from another
            # context (the async generator's finaliser): nothing to reset.
            with contextlib.suppress(ValueError):
                structlog.contextvars.reset_contextvars(**bound)
            with contextlib.suppress(ValueError):
                CURRENT.reset(token)

    def _authenticate(self, metadata: List[Any],
                      context: grpc.aio.ServicerContext) -> Optional[Tenant]:
        if self._tenants is None:
            return OPEN
        if any(key == "authorization" for key, _ in metadata):
            # a bearer token decides alone (Tenants.authenticate): no need
            # for the auth context, which grpc builds anew on every call
            return self._tenants.authenticate(metadata, {})
        try:
            auth = context.auth_context() or {}
        except Exception:  # an insecure call has no auth context to speak of
            auth = {}
        return self._tenants.authenticate(metadata, auth)


def _enabled(log: Any, level: int) -> bool:
    """Whether ``log`` writes lines of ``level`` (a logger that cannot say:
    yes), so that a filtered-out line costs no fields."""
    check = getattr(log, "is_enabled_for", None)
    return True if check is None else bool(check(level))


def _cancelled(context: grpc.aio.ServicerContext) -> bool:
    try:
        return bool(context.cancelled())
    except Exception:  # noqa: BLE001 (a context being torn down)
        return False


def _code_of(exc: BaseException, context: grpc.aio.ServicerContext) -> grpc.StatusCode:
    code = None
    with contextlib.suppress(Exception):
        code = context.code()
    if isinstance(code, grpc.StatusCode):
        return code
    return grpc.StatusCode.UNKNOWN
