"""Server interceptors: KVM errors to gRPC statuses, malformed request
bytes and the activity a drain waits on (here); authentication, logging and
metrics (``calls.CallInterceptor``).

They wrap every rvkvm.v1 method in an async context manager (``around``)
that is active while the handler runs (for a streaming response: while the
stream is produced). Other services (health, reflection) pass untouched.
"""

from __future__ import annotations

import contextlib
import errno
import time
from typing import Any, AsyncIterator, Awaitable, Callable, Dict, Optional, Tuple

import grpc
from google.protobuf.message import DecodeError

from rvkvm.server.kvm import KvmError

from .errors import to_status

SERVICE_PREFIX = "/rvkvm.v1."

Around = Callable[[str, grpc.aio.ServicerContext], contextlib.AbstractAsyncContextManager]


def _wrap_unary_response(behavior: Callable[..., Awaitable[Any]], method: str,
                         around: Around) -> Callable[..., Awaitable[Any]]:
    async def wrapped(request: Any, context: grpc.aio.ServicerContext) -> Any:
        async with around(method, context):
            return await behavior(request, context)
    return wrapped


def _wrap_stream_response(behavior: Callable[..., AsyncIterator[Any]], method: str,
                          around: Around) -> Callable[..., AsyncIterator[Any]]:
    async def wrapped(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        async with around(method, context):
            async for response in behavior(request, context):
                yield response
    return wrapped


def wrap_handler(handler: grpc.RpcMethodHandler, method: str,
                 around: Around) -> grpc.RpcMethodHandler:
    codec = {"request_deserializer": handler.request_deserializer,
             "response_serializer": handler.response_serializer}
    if handler.unary_unary:
        return grpc.unary_unary_rpc_method_handler(
            _wrap_unary_response(handler.unary_unary, method, around), **codec)
    if handler.stream_unary:
        return grpc.stream_unary_rpc_method_handler(
            _wrap_unary_response(handler.stream_unary, method, around), **codec)
    if handler.unary_stream:
        return grpc.unary_stream_rpc_method_handler(
            _wrap_stream_response(handler.unary_stream, method, around), **codec)
    return grpc.stream_stream_rpc_method_handler(
        _wrap_stream_response(handler.stream_stream, method, around), **codec)


def cached_wrap(owner: Any, method: str, handler: grpc.RpcMethodHandler,
                build: Callable[[], grpc.RpcMethodHandler]) -> grpc.RpcMethodHandler:
    """``build()``'s wrapping of ``handler`` for ``method``, made once per
    handler (the service's handlers do not change): a call then costs a
    dict lookup here, not new handler objects in every interceptor."""
    cache: Dict[str, Tuple[grpc.RpcMethodHandler, grpc.RpcMethodHandler]] = (
        owner.__dict__.setdefault("_wrapped", {}))
    hit = cache.get(method)
    if hit is not None and hit[0] is handler:
        return hit[1]
    wrapped = build()
    cache[method] = (handler, wrapped)
    return wrapped


class _Layer(grpc.aio.ServerInterceptor):
    """An interceptor that wraps each rvkvm.v1 handler (``wrap``, made once
    per method); usable alone or as a layer of ``ChainedInterceptor``."""

    def wrap(self, handler: grpc.RpcMethodHandler, method: str) -> grpc.RpcMethodHandler:
        raise NotImplementedError

    async def intercept_service(
        self, continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Optional[grpc.RpcMethodHandler]:
        return await _intercept(self, self.wrap, continuation, handler_call_details)


async def _intercept(
    owner: Any, wrap: Callable[[grpc.RpcMethodHandler, str], grpc.RpcMethodHandler],
    continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
    handler_call_details: grpc.HandlerCallDetails,
) -> Optional[grpc.RpcMethodHandler]:
    """The next handler, wrapped by ``wrap`` (once per method, see
    ``cached_wrap``) when it is one of rvkvm.v1's."""
    handler = await continuation(handler_call_details)
    method = handler_call_details.method
    if handler is None or not method.startswith(SERVICE_PREFIX):
        return handler
    return cached_wrap(owner, method, handler, lambda: wrap(handler, method))


class ChainedInterceptor(grpc.aio.ServerInterceptor):
    """Several ``_Layer`` interceptors as one (``layers``: outermost first):
    the same wrapping of every rvkvm.v1 handler, built once per method,
    but one interceptor for grpc to run per call instead of one each (each
    is a coroutine and a continuation per call, on the event loop every
    call waits for)."""

    def __init__(self, *layers: _Layer) -> None:
        self.layers = layers

    async def intercept_service(
        self, continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Optional[grpc.RpcMethodHandler]:
        return await _intercept(self, self._build, continuation, handler_call_details)

    def _build(self, handler: grpc.RpcMethodHandler, method: str) -> grpc.RpcMethodHandler:
        for layer in reversed(self.layers):
            handler = layer.wrap(handler, method)
        return handler


class _AroundInterceptor(_Layer):
    def around(self, method: str,
               context: grpc.aio.ServicerContext) -> contextlib.AbstractAsyncContextManager:
        raise NotImplementedError

    def wrap(self, handler: grpc.RpcMethodHandler, method: str) -> grpc.RpcMethodHandler:
        return wrap_handler(handler, method, self.around)


REQUEST_ID = "x-request-id"  # a call's id: its metadata key, both ways
KEPT_TRAILERS = (REQUEST_ID,)


def _kept(context: grpc.aio.ServicerContext) -> tuple:
    return tuple((k, v) for k, v in (context.trailing_metadata() or ()) if k in KEPT_TRAILERS)


class _AbortOnKvmError:
    """``KvmErrorInterceptor.around``: a class, not an
    ``asynccontextmanager`` (an async generator per call)."""

    __slots__ = ("_context",)

    def __init__(self, context: grpc.aio.ServicerContext) -> None:
        self._context = context

    async def __aenter__(self) -> None:
        return None

    async def __aexit__(self, kind: Any, exc: Optional[BaseException], tb: Any) -> bool:
        if isinstance(exc, KvmError):
            # the abort's trailers replace those set before: keep the
            # request id the call interceptor put there
            await self._context.abort_with_status(
                to_status(exc, trailing=_kept(self._context)))
        return False


class KvmErrorInterceptor(_AroundInterceptor):
    """A ``KvmError`` escaping a handler aborts the RPC with its status."""

    def around(self, method: str,
               context: grpc.aio.ServicerContext) -> contextlib.AbstractAsyncContextManager:
        return _AbortOnKvmError(context)


class ActivityInterceptor(_AroundInterceptor):
    """Counts rvkvm.v1 calls in flight, so a drain knows when the clients
    are gone."""

    def __init__(self) -> None:
        self._in_flight = 0
        self._last = time.monotonic()
        self._active = _Counted(self)

    def quiet_for(self) -> float:
        """Seconds since the last call ended (0 while one is in flight)."""
        if self._in_flight:
            return 0.0
        return time.monotonic() - self._last

    def around(self, method: str,
               context: grpc.aio.ServicerContext) -> contextlib.AbstractAsyncContextManager:
        return self._active  # no state of the call's own


class _Counted:
    """``ActivityInterceptor.around``: counts the call in flight."""

    __slots__ = ("_owner",)

    def __init__(self, owner: ActivityInterceptor) -> None:
        self._owner = owner

    async def __aenter__(self) -> None:
        self._owner._in_flight += 1

    async def __aexit__(self, kind: Any, exc: Optional[BaseException], tb: Any) -> bool:
        self._owner._in_flight -= 1
        self._owner._last = time.monotonic()
        return False


class Malformed:
    """What a request that does not parse deserializes to."""

    def __init__(self, size: int, error: Exception) -> None:
        self.size = size
        self.error = error

    def to_error(self) -> KvmError:
        text = str(self.error).splitlines()[0][:80] if str(self.error) else ""
        return KvmError(errno.EINVAL, f"malformed request of {self.size} bytes: "
                        f"{type(self.error).__name__} {text}".rstrip())


class MalformedRequestInterceptor(_Layer):
    """Request bytes that do not parse (truncated, over-long varint, a string
    that is not UTF-8) answer INVALID_ARGUMENT with EINVAL instead of
    failing inside grpc without an errno. Innermost, so the error and call
    interceptors see the ``KvmError``: the call's one log line says it."""

    def wrap(self, handler: grpc.RpcMethodHandler, method: str) -> grpc.RpcMethodHandler:
        parse = handler.request_deserializer

        def deserialize(data: bytes) -> Any:
            try:
                return parse(data)
            except (DecodeError, UnicodeDecodeError, ValueError, RuntimeError) as exc:
                return Malformed(len(data), exc)

        def check(request: Any, context: grpc.aio.ServicerContext) -> Any:
            if isinstance(request, Malformed):
                raise request.to_error()
            return request

        async def checked(requests: AsyncIterator[Any],
                          context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            async for request in requests:
                yield check(request, context)

        codec = {"request_deserializer": deserialize,
                 "response_serializer": handler.response_serializer}
        if handler.unary_unary:
            inner_uu = handler.unary_unary

            async def unary_unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
                return await inner_uu(check(request, context), context)
            return grpc.unary_unary_rpc_method_handler(unary_unary, **codec)
        if handler.unary_stream:
            inner_us = handler.unary_stream

            async def unary_stream(request: Any,
                                   context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
                async for response in inner_us(check(request, context), context):
                    yield response
            return grpc.unary_stream_rpc_method_handler(unary_stream, **codec)
        if handler.stream_unary:
            inner_su = handler.stream_unary

            async def stream_unary(requests: AsyncIterator[Any],
                                   context: grpc.aio.ServicerContext) -> Any:
                return await inner_su(checked(requests, context), context)
            return grpc.stream_unary_rpc_method_handler(stream_unary, **codec)
        inner_ss = handler.stream_stream

        async def stream_stream(requests: AsyncIterator[Any],
                                context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            async for response in inner_ss(checked(requests, context), context):
                yield response
        return grpc.stream_stream_rpc_method_handler(stream_stream, **codec)
