"""``rvkvm-server`` / ``python -m rvkvm.server``: run the rvkvm gRPC service."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from typing import List, Optional

import structlog

from .kvm import HostProfile
from .rpc import ServerConfig, create_server, settings
from .rpc.tenants import Tenants, TenantsError, parse_size


def _parse(argv: Optional[List[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="rvkvm-server",
                                     description="Serve a virtual RISC-V KVM host over gRPC.")
    parser.add_argument("--listen", default="127.0.0.1:50051",
                        help="host:port to listen on (port 0: any free port)")
    parser.add_argument("--engine", choices=("fast", "interp"), default="fast",
                        help="emulator engine of the harts")
    parser.add_argument("--max-vms", type=int, default=0, help="VMs at once (0: no limit)")
    parser.add_argument("--host-plus", default="", metavar="EXT,...",
                        help="add host ISA extensions or capabilities (e.g. v,ssaia)")
    parser.add_argument("--host-minus", default="", metavar="EXT,...",
                        help="remove host ISA extensions or capabilities (e.g. ssnpm)")
    parser.add_argument("--inline-slice", type=int, default=ServerConfig.inline_slice,
                        metavar="N", help="instructions a Run tries on the event loop after "
                        "a guest exit before using a run thread (0: never)")
    parser.add_argument("--log-level", default="info",
                        choices=("debug", "info", "warning", "error"))
    parser.add_argument("--json-logs", action="store_true", help="log JSON lines")
    _tenancy_arguments(parser)
    return settings.parse(parser, argv)


def _tenancy_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--log-format", choices=("json", "console"), default="json",
                        help="log lines on stderr: JSON (one object a line) or console")
    parser.add_argument("--tenants", metavar="FILE",
                        help="TOML file of tenants (bearer token SHA-256, client_cn, quotas); "
                             "without it the server is open (tenant 'default') and listens "
                             "on loopback only")
    parser.add_argument("--insecure-open", action="store_true",
                        help="allow an open server (no tenants file) on a non-loopback address")
    parser.add_argument("--tls-cert", metavar="PEM", help="TLS certificate chain of the server")
    parser.add_argument("--tls-key", metavar="PEM", help="TLS private key of the server")
    parser.add_argument("--tls-client-ca", metavar="PEM",
                        help="require client certificates signed by this CA (mTLS); a "
                             "certificate whose CN is a tenant's client_cn authenticates it")
    parser.add_argument("--lease", type=float, default=600.0, metavar="SECONDS",
                        help="destroy a VM no call has used for this long (0: never; 600)")
    parser.add_argument("--max-memory", type=parse_size, default=None, metavar="SIZE",
                        help="guest memory of all VMs together, e.g. 16G (default: the "
                             "host's physical memory; 0: no limit)")
    parser.add_argument("--metrics-listen", default="", metavar="ADDR",
                        help="host:port serving Prometheus metrics at /metrics")


def _configure_logging(level: str, json_logs: bool) -> None:
    renderer = (structlog.processors.JSONRenderer() if json_logs
                else structlog.dev.ConsoleRenderer(colors=False))
    structlog.configure(
        processors=[structlog.contextvars.merge_contextvars,
                    structlog.processors.add_log_level,
                    structlog.processors.TimeStamper(fmt="iso", utc=True),
                    structlog.processors.format_exc_info, renderer],
        # stderr: stdout carries the "listening on" line scripts wait for
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelName(level.upper())),
    )


async def serve(listen: str, config: ServerConfig) -> None:
    server, port = await create_server(listen, config)
    await server.start()
    host = listen.rsplit(":", 1)[0]
    # The port line is what scripts (and `rvkvm run` without --server) wait for.
    print(f"rvkvm-server listening on {host}:{port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop(grace=1.0)


def _host(plus: str, minus: str) -> HostProfile:
    """The default host with the listed extensions added and removed."""
    host = HostProfile.default()
    names = [n.strip().lower() for n in plus.split(",") if n.strip()]
    if names:
        host = host.plus(*names)
    names = [n.strip().lower() for n in minus.split(",") if n.strip()]
    if names:
        host = host.without(*names)
    return host


def main(argv: Optional[List[str]] = None) -> int:
    args = _parse(argv)
    _configure_logging(args.log_level, args.json_logs or args.log_format == "json")
    try:
        host = _host(args.host_plus, args.host_minus)
    except ValueError as err:
        print(f"rvkvm-server: {err}", file=sys.stderr)
        return 2
    config = ServerConfig(host=host, engine=args.engine, max_vms=args.max_vms,
                          inline_slice=args.inline_slice)
    try:
        _tenancy_config(args, config)
    except (TenantsError, ValueError) as err:
        print(f"rvkvm-server: {err}", file=sys.stderr)
        return 2
    try:
        asyncio.run(serve(args.listen, config))
    except OSError as err:
        print(f"rvkvm-server: {err}", file=sys.stderr)
        return 1
    return 0


def _tenancy_config(args: argparse.Namespace, config: ServerConfig) -> None:
    """Tenants, TLS, leases, memory ceiling and metrics from the arguments."""
    config.tenants = Tenants.load(args.tenants) if args.tenants else None
    config.insecure_open = args.insecure_open
    config.tls_cert, config.tls_key = args.tls_cert, args.tls_key
    config.tls_client_ca = args.tls_client_ca
    if bool(args.tls_cert) != bool(args.tls_key):
        raise ValueError("--tls-cert and --tls-key go together")
    if args.tls_client_ca and not args.tls_cert:
        raise ValueError("--tls-client-ca needs --tls-cert and --tls-key")
    if args.lease < 0:
        raise ValueError("--lease must be >= 0")
    config.lease = args.lease
    config.max_memory = args.max_memory
    config.metrics_listen = args.metrics_listen


if __name__ == "__main__":
    raise SystemExit(main())
