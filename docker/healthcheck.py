"""Container health check: grpc.health.v1.Health/Check on the server.

    python healthcheck.py [HOST:PORT] [SERVICE]

Exit 0 when the server answers SERVING within 2 s, 1 otherwise (the
Docker HEALTHCHECK convention). The health service needs no token. For a
server with --tls-cert, set RVKVM_TLS_CA (the CA of its certificate) and,
if the certificate does not name 127.0.0.1, RVKVM_TLS_SERVER_NAME; with
--tls-client-ca also RVKVM_TLS_CERT and RVKVM_TLS_KEY.
"""

import os
import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


def _read(name: str) -> "bytes | None":
    path = os.environ.get(name)
    if not path:
        return None
    with open(path, "rb") as f:
        return f.read()


def _channel(address: str) -> grpc.Channel:
    ca = _read("RVKVM_TLS_CA")
    if ca is None:
        return grpc.insecure_channel(address)
    creds = grpc.ssl_channel_credentials(ca, _read("RVKVM_TLS_KEY"), _read("RVKVM_TLS_CERT"))
    name = os.environ.get("RVKVM_TLS_SERVER_NAME")
    options = [("grpc.ssl_target_name_override", name)] if name else []
    return grpc.secure_channel(address, creds, options=options)


def main(argv: list) -> int:
    address = argv[1] if len(argv) > 1 else "127.0.0.1:50051"
    service = argv[2] if len(argv) > 2 else ""
    try:
        with _channel(address) as channel:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=2)
    except grpc.RpcError as err:
        print(f"unhealthy: {err.code().name}", file=sys.stderr)
        return 1
    if reply.status != health_pb2.HealthCheckResponse.SERVING:
        print(f"unhealthy: {health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)}",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
