"""Channels to an rvkvm server with its credentials: a bearer token
(``authorization: Bearer <token>`` metadata, as gRPC's access-token call
credentials send it), TLS with a CA to trust, and a client certificate
for mTLS.

    channel = open_channel("10.0.0.5:50051", Credentials(token="...", tls_ca="ca.pem"))
    kvm = Kvm(channel)
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Optional

import grpc


@dataclass(frozen=True)
class Credentials:
    token: Optional[str] = None
    # PEM files: the CA that signed the server's certificate (turns TLS on),
    # and the client's certificate and key (mTLS).
    tls_ca: Optional[str] = None
    tls_cert: Optional[str] = None
    tls_key: Optional[str] = None
    # Name to check the server's certificate against instead of the host.
    server_name: Optional[str] = None

    @property
    def tls(self) -> bool:
        return bool(self.tls_ca or self.tls_cert)

    @classmethod
    def from_env(cls, environ: Optional[Mapping[str, str]] = None, **given: Any) -> Credentials:
        """``given`` values, else ``RVKVM_TOKEN``, ``RVKVM_TLS_CA``,
        ``RVKVM_TLS_CERT``, ``RVKVM_TLS_KEY``, ``RVKVM_TLS_SERVER_NAME``."""
        env = os.environ if environ is None else environ
        values = {}
        for name in ("token", "tls_ca", "tls_cert", "tls_key", "server_name"):
            value = given.get(name)
            if value is None:
                value = env.get("RVKVM_" + ("TLS_SERVER_NAME" if name == "server_name"
                                             else name.upper())) or None
            values[name] = value
        return cls(**values)


def _read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


class _Metadata(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor,
                grpc.StreamUnaryClientInterceptor, grpc.StreamStreamClientInterceptor):
    """Adds ``authorization`` to every call of a plaintext channel (gRPC
    refuses call credentials there)."""

    def __init__(self, token: str) -> None:
        self._pair = ("authorization", f"Bearer {token}")

    def _details(self, details: Any) -> Any:
        metadata = list(details.metadata or ()) + [self._pair]
        return details._replace(metadata=metadata)

    def intercept_unary_unary(self, continuation: Callable, details: Any, request: Any) -> Any:
        return continuation(self._details(details), request)

    def intercept_unary_stream(self, continuation: Callable, details: Any, request: Any) -> Any:
        return continuation(self._details(details), request)

    def intercept_stream_unary(self, continuation: Callable, details: Any,
                               requests: Any) -> Any:
        return continuation(self._details(details), requests)

    def intercept_stream_stream(self, continuation: Callable, details: Any,
                                requests: Any) -> Any:
        return continuation(self._details(details), requests)


def channel_credentials(creds: Credentials) -> grpc.ChannelCredentials:
    ssl = grpc.ssl_channel_credentials(
        root_certificates=_read(creds.tls_ca) if creds.tls_ca else None,
        private_key=_read(creds.tls_key) if creds.tls_key else None,
        certificate_chain=_read(creds.tls_cert) if creds.tls_cert else None)
    if creds.token:
        return grpc.composite_channel_credentials(
            ssl, grpc.access_token_call_credentials(creds.token))
    return ssl


def open_channel(address: str, creds: Optional[Credentials] = None) -> grpc.Channel:
    """A sync channel to ``address`` with ``creds``."""
    creds = creds or Credentials()
    if creds.tls:
        options = ([("grpc.ssl_target_name_override", creds.server_name)]
                   if creds.server_name else [])
        return grpc.secure_channel(address, channel_credentials(creds), options=options)
    channel = grpc.insecure_channel(address)
    if creds.token:
        return grpc.intercept_channel(channel, _Metadata(creds.token))
    return channel
