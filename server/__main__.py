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
from .rpc import ServerConfig, create_server


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
    parser.add_argument("--grace", type=float, default=30.0, metavar="SECONDS",
                        help="on SIGTERM, keep VM state readable this long (or until "
                             "the clients are gone) before exiting")
    return parser.parse_args(argv)


def _configure_logging(level: str, json_logs: bool) -> None:
    renderer = (structlog.processors.JSONRenderer() if json_logs
                else structlog.dev.ConsoleRenderer(colors=False))
    structlog.configure(
        processors=[structlog.processors.add_log_level,
                    structlog.processors.TimeStamper(fmt="iso"), renderer],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelName(level.upper())),
    )


async def serve(listen: str, config: ServerConfig, grace: float = 30.0) -> None:
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
    structlog.get_logger("rvkvm.server").info("draining", grace=grace)
    await server.drain(grace)
    await server.stop(grace=0.5)


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
    _configure_logging(args.log_level, args.json_logs)
    try:
        host = _host(args.host_plus, args.host_minus)
    except ValueError as err:
        print(f"rvkvm-server: {err}", file=sys.stderr)
        return 2
    config = ServerConfig(host=host, engine=args.engine, max_vms=args.max_vms,
                          inline_slice=args.inline_slice)
    asyncio.run(serve(args.listen, config, args.grace))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
