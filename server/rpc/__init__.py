"""The gRPC edge of the virtual KVM host: servicers that translate
``rvkvm.v1`` messages to calls on the KVM model (``server.kvm``) and back.

``create_server(address, config)`` builds a ready-to-start ``grpc.aio``
server; ``python -m rvkvm.server`` runs one.
"""

from .app import Server, create_server
from .config import ServerConfig

__all__ = ["Server", "ServerConfig", "create_server"]
