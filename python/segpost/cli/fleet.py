"""``segpost fleet``: many cameras on the GPUs of one machine or a Ray cluster;
``segpost fleet status``: a running fleet's workers."""
from __future__ import annotations

import sys
import threading

from ..service.runner import stop_on_signals
from .own_session import run_in_own_session


def add_parser(commands) -> None:
    fleet = commands.add_parser("fleet", help="run many cameras on Ray workers (GPUs, machines); 'status' to watch")
    fleet.add_argument("action", nargs="?", choices=("run", "status"), default="run")
    fleet.add_argument("--config", help="the fleet config (JSON); see segpost/fleet/config.py")
    fleet.add_argument("--out", help="folder for one JSON Lines file per camera (or a .jsonl file, merged)")
    fleet.add_argument("--address", default=None,
                       help="Ray cluster: auto or HOST:PORT (default: start a local Ray instance)")
    fleet.add_argument("--status-every", type=float, default=10.0, help="a status line on stderr this often (s)")
    fleet.add_argument("--status-file", help="status: read this file instead of asking the Ray cluster")
    fleet.add_argument("--max-seconds", type=float, default=None, help="stop after this long")
    fleet.add_argument("--metrics-port", type=int, default=None,
                       help="serve /metrics (per worker and camera) and /healthz on this port")
    fleet.add_argument("--health-seconds", type=float, default=60.0,
                       help="/healthz turns unhealthy when no worker finished a round for this long")
    fleet.set_defaults(handler=run_command)


def run_command(args) -> int:
    from ..fleet.config import load_fleet_config
    from ..fleet.coordinator import Fleet
    from ..fleet.status import read_status

    if args.action == "status":
        status = read_status(args.address, args.status_file)
        print(format_status(status))
        return 0
    if not args.config or not args.out:
        raise ValueError("segpost fleet needs --config FLEET.json and --out PATH")
    config = load_fleet_config(args.config)
    if not config.per_camera_files and not args.out.endswith(".jsonl"):
        raise ValueError("with sink.per_camera false, --out is the merged file and must end in .jsonl")
    supervised = run_in_own_session()   # Ray's processes out of reach of a signal to our process group
    if supervised is not None:
        return supervised
    metrics = server = None
    if args.metrics_port is not None:
        from ..service.metrics import Metrics, MetricsServer

        metrics = Metrics(stale_seconds=args.health_seconds)
        server = MetricsServer(metrics, args.metrics_port)
        print(f"segpost fleet: metrics on http://0.0.0.0:{server.port}/metrics, health on /healthz", file=sys.stderr)
    fleet = Fleet(config, args.out, address=args.address, status_every=args.status_every, metrics=metrics)
    stop = threading.Event()
    try:
        fleet.start()
        # After ray.init, which installs its own SIGTERM handler.
        with stop_on_signals(stop):
            fleet.supervise(stop, max_seconds=args.max_seconds)
    finally:
        stats = fleet.shutdown()
        if server is not None:
            server.close()
    how = "stopped by signal" if stop.is_set() else "done"
    print(f"segpost fleet: {how}: {stats.get('written', 0)} records written to {args.out} "
          f"({stats.get('duplicates_dropped', 0)} duplicates dropped)", file=sys.stderr)
    return 0


def format_status(status) -> str:
    lines = [f"{'worker':<10} {'state':<10} {'node':<15} {'gpu':<5} {'fps':>7} {'p50 ms':>7} {'p95 ms':>7} "
             f"{'restarts':>8}  cameras / last error"]
    for w in status.get("workers", []):
        p50 = "-" if w.get("round_ms_p50") is None else f"{w['round_ms_p50']:.1f}"
        p95 = "-" if w.get("round_ms_p95") is None else f"{w['round_ms_p95']:.1f}"
        gpus = ",".join(w.get("gpus") or []) or "-"
        lines.append(f"{w['worker']:<10} {w['state']:<10} {str(w.get('node') or '-'):<15} {gpus:<5} {w['fps']:>7.1f} "
                     f"{p50:>7} {p95:>7} {w['restarts']:>8}  {', '.join(w['cameras'])}"
                     + (f"  [{w['last_error']}]" if w.get("last_error") else ""))
    for s in status.get("standbys", []):
        gpus = ",".join(s.get("gpus") or []) or "-"
        built = "" if s.get("build_seconds") is None else f"  built in {s['build_seconds']:.1f} s"
        lines.append(f"{'standby':<10} {s['state']:<10} {str(s.get('node') or '-'):<15} {gpus:<5}{built}")
    return "\n".join(lines)
