"""``segpost fleet``: many cameras on the GPUs of one machine or a Ray cluster;
``segpost fleet status``: a running fleet's workers."""
from __future__ import annotations

import os
import sys
import threading

from ..service.supervision import stop_on_signals
from .own_session import run_in_own_session


def add_parser(commands) -> None:
    fleet = commands.add_parser("fleet", help="run many cameras on Ray workers (GPUs, machines); 'status' to watch")
    fleet.add_argument("action", nargs="?", choices=("run", "status"), default="run",
                       help="run: start the fleet (needs --config and --out); status: a running fleet's workers")
    fleet.add_argument("--config", help="the fleet config (JSON): examples/fleet.json runs on a CPU; the format: "
                                        "segpost/fleet/config.py")
    fleet.add_argument("--out", help="folder for one JSON Lines file per camera (or a .jsonl file, merged)")
    fleet.add_argument("--address", default=None,
                       help="Ray cluster: auto or HOST:PORT (default: start a local Ray instance)")
    fleet.add_argument("--status-every", type=float, default=10.0, help="a status line on stderr this often (s)")
    fleet.add_argument("--status-file", help="status: read this file instead of asking the Ray cluster")
    fleet.add_argument("--max-seconds", type=float, default=None,
                       help="stop after this many seconds (default: once every file camera ended; SIGINT/SIGTERM stop)")
    fleet.add_argument("--metrics-port", type=int, default=None,
                       help="serve /metrics (per worker and camera) and /healthz on this port")
    fleet.add_argument("--health-seconds", type=float, default=60.0,
                       help="/healthz turns unhealthy when no worker finished a round for this long")
    fleet.add_argument("--ui", default=None, metavar="HOST:PORT",
                       help="serve the fleet's page (segpost[ui]): workers, their cameras and state, each camera's "
                            "latest record; loopback unless --ui-key-file is given, e.g. 127.0.0.1:8080")
    fleet.add_argument("--ui-key-file", default=None, metavar="FILE", help="the page's keys, one a line (as run's)")
    fleet.add_argument("--ui-allow-unauthenticated", action="store_true",
                       help="let the page listen beyond loopback without keys (a network you trust)")
    fleet.add_argument("--ui-certfile", default=None, help="the page over HTTPS: PEM certificate chain")
    fleet.add_argument("--ui-keyfile", default=None, help="the page over HTTPS: PEM private key")
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
    _check_out(args.out, config.per_camera_files)
    _check_resources(args, config)
    ui = _ui_settings(args)   # its mistakes said before Ray starts
    supervised = run_in_own_session()   # Ray's processes out of reach of a signal to our process group
    if supervised is not None:
        return supervised
    metrics = server = None
    if args.metrics_port is not None:
        from ..service.metrics import Metrics, MetricsServer

        metrics = Metrics(stale_seconds=args.health_seconds)
        server = MetricsServer(metrics, args.metrics_port)
        print(f"segpost fleet: metrics on http://0.0.0.0:{server.port}/metrics, health on /healthz", file=sys.stderr)
    fleet = Fleet(config, args.out, address=args.address, status_every=args.status_every, metrics=metrics,
                  page_frames=ui is not None)
    stop = threading.Event()
    page = None
    try:
        if ui is not None:
            page = _fleet_page(ui, fleet, config, args.out)
        fleet.start()
        # After ray.init, which installs its own SIGTERM handler.
        with stop_on_signals(stop):
            fleet.supervise(stop, max_seconds=args.max_seconds)
    finally:
        stats = fleet.shutdown()
        if server is not None:
            server.close()
        if page is not None:
            page.close()
    how = "stopped by signal" if stop.is_set() else "done"
    print(f"segpost fleet: {how}: {stats.get('written', 0)} records written to {args.out} "
          f"({stats.get('duplicates_dropped', 0)} duplicates dropped)", file=sys.stderr)
    return 0


def _check_out(out: str, per_camera: bool) -> None:
    """--out's mistakes said with the flag's name, before Ray starts."""
    if per_camera and os.path.exists(out) and not os.path.isdir(out):
        raise ValueError(f"--out {out}: a file; with one file per camera (sink.per_camera, the default) --out is a "
                         "folder")
    if not per_camera and os.path.isdir(out):
        raise ValueError(f"--out {out}: a folder; with sink.per_camera false --out is the merged .jsonl file")
    parent = os.path.dirname(os.path.abspath(out))
    if not per_camera and not os.path.isdir(parent):
        raise ValueError(f"--out {out}: the folder {parent} does not exist")


def _check_resources(args, config) -> None:
    """A worker the local Ray instance cannot place: an error now, not a wait without end."""
    from .ray_resources import check_local_resources

    gpus = max(config.gpus_per_worker, config.standby_gpus if config.standby_workers else 0.0)
    check_local_resources(args.address, {"GPU": gpus, "CPU": config.cpus_per_worker},
                          who=f"{args.config}: each worker asks for", fixes={
                              "GPU": 'set "gpus_per_worker": 0 there (and "standby_gpus": 0) to run the workers on '
                                     "CPUs",
                              "CPU": 'lower "cpus_per_worker" there'})


def _ui_settings(args):
    """--ui's listen address and keys, checked (a page beyond loopback without keys is refused)."""
    if args.ui is None:
        return None
    from ..ui.guard import Guard, parse_listen, read_keys

    host, port = parse_listen(args.ui)
    keys = read_keys(args.ui_key_file)
    Guard(host, keys, args.ui_allow_unauthenticated)
    return dict(host=host, port=port, keys=keys, allow_unauthenticated=args.ui_allow_unauthenticated,
                certfile=args.ui_certfile, keyfile=args.ui_keyfile)


def _fleet_page(ui, fleet, config, out: str):
    from ..fleet.sink import file_stem
    from ..ui.fleet_page import FleetPage

    names = [c.name for c in config.cameras]
    files = ({os.path.join(out, file_stem(name) + ".jsonl"): [name] for name in names} if config.per_camera_files
             else {out: names})
    page = FleetPage(status=lambda: fleet.last_status, files=lambda: files, frames=fleet.frames, **ui)
    print(f"segpost fleet: the fleet's page on {page.url}", file=sys.stderr)
    return page


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
