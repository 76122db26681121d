"""``segpost serve``: clients send frames over HTTP or gRPC, replicas batch them into pipeline rounds."""
from __future__ import annotations

import sys
import threading

from ..service.supervision import stop_on_signals
from .own_session import run_in_own_session


def add_parser(commands) -> None:
    serve = commands.add_parser("serve", help="serve the pipeline to clients over HTTP and gRPC (Ray Serve)")
    serve.add_argument("--config", help="the serve config (JSON): examples/serve.json runs on a CPU; every key: "
                                        "--print-schema")
    serve.add_argument("--address", default=None, help="Ray cluster: auto or HOST:PORT (default: a local instance)")
    serve.add_argument("--print-proto", action="store_true", help="print the gRPC service's .proto and exit")
    serve.add_argument("--print-schema", action="store_true", help="print the serve config's JSON Schema and exit")
    serve.add_argument("--max-seconds", type=float, default=None,
                       help="stop after this many seconds once serving (default: at SIGINT/SIGTERM)")
    serve.add_argument("--metrics-port", type=int, default=None,
                       help="Prometheus metrics (segpost's and Ray Serve's, prefixed ray_) of the local Ray instance "
                            "on this port")
    serve.set_defaults(handler=run_command)


def run_command(args) -> int:
    if args.print_schema:   # the config's schema needs pydantic alone (a base dependency)
        import json

        from ..serve.config import schema

        print(json.dumps(schema(), indent=1))
        return 0
    try:
        from ..serve import api
    except ImportError as exc:   # protobuf (and Ray, below) come with the fleet extra
        raise ValueError(f"segpost serve needs the fleet extra ({exc.name} is missing): "
                         "pip install 'segpost[fleet]'") from exc
    if args.print_proto:
        print(api.proto_text(), end="")
        return 0
    if not args.config:
        raise ValueError("segpost serve needs --config SERVE.json")
    from ..serve.app import load_serve_config, start_serve, stop_serve

    config = load_serve_config(args.config)
    _check_resources(args, config)
    supervised = run_in_own_session()   # Ray's processes out of reach of a signal to our process group
    if supervised is not None:
        return supervised
    endpoints = start_serve(config, address=args.address, metrics_port=args.metrics_port)
    grpc = f", gRPC {endpoints['grpc']} ({api.FULL_METHOD})" if "grpc" in endpoints else ""
    metrics = f", metrics {endpoints['metrics']}" if "metrics" in endpoints else ""
    keys = f"{len(config.api_keys)} API key(s)" if config.api_keys else "no API keys"
    print(f"segpost serve: HTTP POST {endpoints['http']} (JSON){grpc}{metrics}; {keys}; "
          f"Ctrl-C or SIGTERM stops\nsegpost serve: {endpoints['decode']}", file=sys.stderr, flush=True)
    stop = threading.Event()
    with stop_on_signals(stop):
        stop.wait(args.max_seconds)
    stop_serve()
    print("segpost serve: stopped", file=sys.stderr)
    return 0


def _check_resources(args, config) -> None:
    """A replica the local Ray instance cannot place: an error now, not a silent wait in Serve's start."""
    from .ray_resources import check_local_resources

    # Serve's start waits for every replica: the first ones an autoscaling config asks for.
    auto = config.autoscaling or {}
    replicas = config.num_replicas if not auto else \
        max(auto.get("initial_replicas") or 0, auto.get("min_replicas", 1), 1)
    check_local_resources(args.address, {"GPU": replicas * config.gpus_per_replica,
                                         "CPU": replicas * config.cpus_per_replica},
                          who=f"{args.config}: {replicas} replica(s) of {config.gpus_per_replica:g} GPU and "
                              f"{config.cpus_per_replica:g} CPU each ask in all for",
                          fixes={"GPU": 'set "gpus_per_replica": 0 there to run the replicas on CPUs',
                                 "CPU": 'lower "cpus_per_replica" or "num_replicas" there'})
