"""Server interceptors: KVM errors to gRPC statuses (here), authentication,
logging and metrics (``calls.CallInterceptor``).

They wrap every rvkvm.v1 method in an async context manager (``around``)
that is active while the handler runs (for a streaming response: while the
stream is produced). Other services (health, reflection) pass untouched.
"""

from __future__ import annotations

import contextlib
from typing import Any, AsyncIterator, Awaitable, Callable, Optional

import grpc

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


class _AroundInterceptor(grpc.aio.ServerInterceptor):
    def around(self, method: str,
               context: grpc.aio.ServicerContext) -> contextlib.AbstractAsyncContextManager:
        raise NotImplementedError

    async def intercept_service(
        self, continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Optional[grpc.RpcMethodHandler]:
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or not method.startswith(SERVICE_PREFIX):
            return handler
        return wrap_handler(handler, method, self.around)


class KvmErrorInterceptor(_AroundInterceptor):
    """A ``KvmError`` escaping a handler aborts the RPC with its status."""

    @contextlib.asynccontextmanager
    async def around(self, method: str,
                     context: grpc.aio.ServicerContext) -> AsyncIterator[None]:
        try:
            yield
        except KvmError as err:
            await context.abort_with_status(to_status(err))
