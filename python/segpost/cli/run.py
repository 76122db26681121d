"""``segpost run``: a config's engines on your cameras (files, RTSP/HTTP streams), records to JSON
Lines and/or MQTT, metrics on HTTP, for as long as it takes."""
from __future__ import annotations

import contextlib
import dataclasses
import os
import sys
import threading
from typing import Optional

from ..config import UiConfig, load_config, read_json, read_run_settings, validated
from ..io.recovery import CameraState, open_tracks, recover, truncate_torn_line
from ..io.secrets import Redactor
from ..io.sinks import JsonLinesSink, MqttSink
from ..io.sources import CameraSource, decoder_factory
from ..pipeline import MultiCameraPipeline
from ..postprocess import OutputKind
from ..preprocess import RESIZE_FILTERS
from ..schedule import CAMERAS_PER_SLOT, ScheduleConfig, ScheduledPipeline, most_cameras
from ..service.runner import CameraRunner
from ..service.supervision import stop_on_signals
from ..track import TrackerConfig
from .common import check_output_file, choose_device


def add_parser(commands) -> None:
    run = commands.add_parser("run", help="run a config's engines on videos or streams; JSON Lines and/or MQTT out")
    run.add_argument("--config", required=True,
                     help="pipeline config (JSON): engines, classes, thresholds; examples/run.json runs the "
                          "synthetic engines on a CPU; the format: segpost/config.py")
    run.add_argument("--source", action="append", required=True,
                     help="video file, RTSP/HTTP URL or camera index; repeatable (one per camera)")
    run.add_argument("--out", default=None, help="JSON Lines output file ('-': stdout; the default without --mqtt)")
    run.add_argument("--rotate-mb", type=float, default=None, help="start a new --out file past this size")
    run.add_argument("--rotate-minutes", type=float, default=None, help="start a new --out file after this long")
    run.add_argument("--keep-files", type=int, default=None, help="rotated --out files to keep (default: all)")
    run.add_argument("--mqtt", default=None, metavar="URL",
                     help="also publish each camera-round: mqtt://[user:password@]host[:port]/topic/{camera}")
    run.add_argument("--mqtt-buffer", type=int, default=10000, help="messages kept while the broker is away")
    run.add_argument("--masks", choices=("rle", "png", "none"), default="rle",
                     help="each detection's mask: rle (COCO run lengths in the record), png (a file in --mask-dir, "
                          "its path in the record), none")
    run.add_argument("--mask-dir", default="masks", help="where --masks png writes its files")
    run.add_argument("--max-rounds", type=int, default=None,
                     help="stop after this many rounds (default: when every file camera ended, or on SIGINT/SIGTERM)")
    run.add_argument("--track", action="store_true",
                     help="track identities: a track_id per detection, track_started/track_ended event lines "
                          "(the config's \"track\" settings, else the defaults)")
    run.add_argument("--zones", default=None, metavar="FILE",
                     help="zones and lines (JSON: {camera: [zones]}, cameras \"0\", \"1\", ... in --source order; "
                          "the format: segpost/zones/__init__.py): zone_entered / zone_left / zone_dwell / zone_count "
                          "/ line_crossed lines; replaces the config's \"zones\"; turns tracking on as --track does")
    run.add_argument("--schedule", choices=("every_frame", "on_change"), default=None,
                     help="every_frame: the model sees every frame taken; on_change: it sees the cameras whose scene "
                          "changed (and each at least every max_interval), the others get predicted records; "
                          "then --source may outnumber max_cameras (default: the config's \"schedule\", else "
                          "every_frame)")
    run.add_argument("--device", choices=("auto", "cuda", "cpu"), default="auto",
                     help="where the pipeline runs; auto: cuda when segpost's CUDA path works here, else cpu")
    run.add_argument("--decode", choices=("auto", "gpu", "cpu"), default="auto",
                     help="gpu: NVDEC (segpost[nvdec]); cpu: OpenCV; auto: NVDEC where it decodes the codec")
    run.add_argument("--resize", choices=sorted(RESIZE_FILTERS), default=None,
                     help="preprocessing filter (default: the config's, else antialias = the model's processor)")
    run.add_argument("--metrics-port", type=int, default=None, help="serve /metrics and /healthz on this port")
    run.add_argument("--health-seconds", type=float, default=30.0,
                     help="/healthz turns unhealthy when no round finished for this long")
    run.add_argument("--stall-seconds", type=float, default=10.0, help="reconnect a live stream silent this long")
    run.add_argument("--resume", action="store_true",
                     help="continue the --out file of an earlier run that stopped or died: file cameras resume after "
                          "their last frame written (a finished one is not read again), track ids continue, the "
                          "tracks it left open get their track_ended (reason \"restart\")")
    run.add_argument("--max-failed-rounds", type=int, default=10,
                     help="end with status 1 after this many failed rounds in a row (a failed round's frames are "
                          "written off as skipped)")
    run.add_argument("--watchdog-seconds", type=float, default=300.0,
                     help="exit with status 3 when one round takes longer (a hung engine or GPU); 0: off")
    # The live page's settings are declared once, as the run config's "ui" block (UiConfig); each
    # flag overrides its key.
    ui = UiConfig.model_fields
    run.add_argument("--ui", default=None, metavar="HOST:PORT",
                     help="serve the live page (segpost[ui]): every camera with its masks, tracks, events and health; "
                          "loopback unless --ui-key-file is given, e.g. 127.0.0.1:8080 (default: the config's "
                          "\"ui\" block's listen, else off)")
    run.add_argument("--ui-key-file", default=None, metavar="FILE",
                     help="the live page's API keys, one a line (16+ characters): browsers log in with one, clients "
                          "send \"Authorization: Bearer KEY\"; needed beyond loopback (ui.key_file)")
    run.add_argument("--ui-allow-unauthenticated", action="store_true", default=None,
                     help="let the live page listen beyond loopback without keys (a network you trust) "
                          "(ui.allow_unauthenticated)")
    run.add_argument("--ui-certfile", default=None, help="the live page over HTTPS: PEM certificate chain (ui.certfile)")
    run.add_argument("--ui-keyfile", default=None, help="the live page over HTTPS: PEM private key (ui.keyfile)")
    for flag, key, kind in (("--ui-fps", "fps", float), ("--ui-width", "width", int)):
        run.add_argument(flag, type=kind, default=None,
                         help=f"{ui[key].description} (default: the config's ui.{key}, else {ui[key].default})")
    run.set_defaults(handler=run_command)


def run_command(args) -> int:
    device = choose_device(args.device)
    redactor = Redactor()
    for url in args.source:
        redactor.register(url)
    # From the start: a SIGTERM while the engines load (systemd stopping a unit that is starting)
    # stops the run before its first round, cleanly, instead of killing it (-15). Kept while the
    # process exits, for the same reason.
    stop = threading.Event()
    try:
        with stop_on_signals(stop, restore=False):
            return _run(args, device, redactor, stop)
    except (ValueError, OSError) as exc:
        raise ValueError(redactor(exc)) from None


def _run(args, device: str, redactor: Redactor, stop: threading.Event) -> int:
    if args.out not in (None, "-"):
        check_output_file("--out", args.out)
    ui = _ui_settings(args)   # before any work: a mistake in it is said at once
    vision_encoder, decoder, config = load_config(args.config, device=device)
    schedule = config.schedule or ScheduleConfig()
    if args.schedule:
        schedule = dataclasses.replace(schedule, mode=args.schedule)
    on_change = schedule.mode == "on_change"
    if len(args.source) > config.max_cameras and not on_change:
        raise ValueError(f"{len(args.source)} sources but the config allows max_cameras={config.max_cameras} "
                         "(--schedule on_change serves more cameras than that)")
    if on_change and len(args.source) > most_cameras(config.max_cameras, schedule):
        raise ValueError(f"{len(args.source)} sources but on_change serves at most {CAMERAS_PER_SLOT} x the config's "
                         f"max_cameras={config.max_cameras} = {most_cameras(config.max_cameras, schedule)} per pipeline")
    output = OutputKind.RLE if args.masks == "rle" else OutputKind.PACKED
    # on_change keeps the engines' batch (max_cameras) and tracks every source (predicted records
    # move the tracks' masks).
    batch = min(config.max_cameras, len(args.source)) if on_change else len(args.source)
    config = dataclasses.replace(config, max_cameras=batch, cameras=len(args.source) if on_change else None,
                                 track=config.track or (TrackerConfig() if args.track or on_change else None))
    config = dataclasses.replace(config, output=output,
                                 resize=args.resize or config.resize,
                                 track=config.track or (TrackerConfig() if args.track else None))
    config = _zones(args, config)
    resume = resume_point(args)
    decode = "cpu" if device == "cpu" and args.decode == "auto" else args.decode
    if device == "cpu" and decode == "gpu":
        raise ValueError("--decode gpu needs --device cuda (NVDEC frames live on the GPU)")
    open_decoder, why = decoder_factory(decode, timeout_seconds=args.stall_seconds)
    print(f"segpost run: decoding: {why}", file=sys.stderr)
    pipeline = MultiCameraPipeline(vision_encoder, decoder, config)
    sinks = []
    metrics = server = live = None
    cameras = []
    try:
        if args.out is not None or args.mqtt is None:
            sinks.append(JsonLinesSink(args.out or "-", rotate_bytes=int(args.rotate_mb * 2**20) if args.rotate_mb else None,
                                       rotate_seconds=args.rotate_minutes * 60 if args.rotate_minutes else None,
                                       keep=args.keep_files))
        if args.mqtt:
            mqtt = MqttSink(args.mqtt, buffer=args.mqtt_buffer)
            redactor.register(args.mqtt)
            if not mqtt.connected_at_start:
                print(f"segpost run: MQTT broker {mqtt.shown_url} not reachable yet; buffering up to "
                      f"{args.mqtt_buffer} messages until it is", file=sys.stderr)
            sinks.append(mqtt)
        if args.metrics_port is not None:
            from ..service.metrics import Metrics, MetricsServer

            metrics = Metrics(stale_seconds=args.health_seconds)
            server = MetricsServer(metrics, args.metrics_port)
            print(f"segpost run: metrics on http://0.0.0.0:{server.port}/metrics, health on /healthz", file=sys.stderr)
        cameras = [(index, CameraSource(url, open_decoder, redactor=redactor, stall_seconds=args.stall_seconds,
                                        start_index=resume.start_index(index)))
                   for index, url in enumerate(args.source) if not resume.finished(index)]
        if ui is not None:
            live = _live_page(ui, args, cameras, pipeline, config)
    except BaseException:
        for sink in sinks:
            sink.close()
        if server is not None:
            server.close()
        for _, source in cameras:
            source.close()
        raise
    runner = CameraRunner(pipeline, cameras, sinks, masks=args.masks, mask_dir=args.mask_dir, metrics=metrics,
                          watchdog_seconds=args.watchdog_seconds or None, log=lambda m: print(redactor(m), file=sys.stderr),
                          max_failed_rounds=args.max_failed_rounds, observer=live and live.hub,
                          scheduled=ScheduledPipeline(pipeline, schedule) if on_change else None)
    if pipeline.zones is not None:   # a zone's key is its camera's record name, whichever slot it runs in
        pipeline.zones.masks.set_camera_keys([str(camera) for camera, _ in cameras])
    try:
        resume.apply(runner)
    except BaseException:   # a full disk at the first write: the sources' threads must not outlive us
        with contextlib.suppress(Exception):
            runner.close()
        raise
    try:
        summary = runner.run(max_rounds=args.max_rounds, stop=stop)
    except (ValueError, OSError):
        raise
    except Exception as exc:  # an engine or the GPU failed: say so, non-zero exit (the sinks were flushed)
        print(f"segpost run: error: the pipeline failed in round {runner.rounds}: {type(exc).__name__}: "
              f"{redactor(exc)}", file=sys.stderr)
        return 1
    finally:
        if server is not None:
            server.close()
        if live is not None:
            live.close()
    if cameras and not summary["rounds"] and all(source.error for _, source in cameras):
        print("segpost run: error: no source could be read", file=sys.stderr)
        return 2
    how = "stopped by signal" if summary["stopped"] else "done"
    pace = ""
    if summary.get("round_ms_p50") is not None:
        rate = summary.get("rounds_per_second")
        pace = (f" ({'' if rate is None else f'{rate:.1f} rounds/s, '}round p50 {summary['round_ms_p50']:.1f} ms, "
                f"p95 {summary['round_ms_p95']:.1f} ms)")
    print(f"segpost run: {how}: {summary['rounds']} rounds, {sum(summary['frames'].values())} frames written "
          f"to {', '.join(_describe(s) for s in sinks)}{pace}", file=sys.stderr)
    if "schedule" in summary:
        s = summary["schedule"]
        print(f"segpost run: on_change: {s['model_frames']} model frames, {s['predicted_frames']} predicted, "
              f"{s['skipped_share']:.0%} skipped by the model" + (f"; staleness p50 {s['staleness_p50_s']:.2f} s, "
              f"p95 {s['staleness_p95_s']:.2f} s" if "staleness_p50_s" in s else ""), file=sys.stderr)
    return 0


def _zones(args, config):
    """The zones of --zones FILE, else the config's, checked against this run's cameras and
    classes (one-line errors naming the zone); zones turn tracking on."""
    if args.zones is not None:
        value, where = read_json(args.zones, "zones file"), args.zones
    elif config.zones is not None:
        value, where = dict(config.zones.cameras), f"{args.config}: zones"
    else:
        return config
    zones = _zone_check(args, config)(value, where)
    return dataclasses.replace(config, zones=zones, track=config.track or TrackerConfig())


def _zone_check(args, config):
    """The zones' validation against this run's cameras and classes (the live page's editor uses
    it too: a saved zone is checked exactly as the run's start checked the file)."""
    from ..zones import ZoneSet

    cameras, class_names = [str(i) for i in range(len(args.source))], [c.name for c in config.classes]
    return lambda value, where: ZoneSet.from_value(value, cameras=cameras, class_names=class_names, where=where)


def _ui_settings(args) -> Optional[UiConfig]:
    """The config's "ui" block with the --ui flags given over it (None: no live page)."""
    block = read_run_settings(args.config).ui
    keys = block.model_dump() if block is not None else {}
    flags = {"listen": args.ui, "key_file": args.ui_key_file, "allow_unauthenticated": args.ui_allow_unauthenticated,
             "certfile": args.ui_certfile, "keyfile": args.ui_keyfile, "fps": args.ui_fps, "width": args.ui_width}
    keys.update({key: value for key, value in flags.items() if value is not None})
    if "listen" not in keys:
        if keys:
            raise ValueError("--ui-* flags without --ui HOST:PORT (or the config's ui.listen)")
        return None
    return validated(UiConfig, keys, f"{args.config}: ui (with the --ui flags)")


def _live_page(ui: UiConfig, args, cameras, pipeline, config):
    from ..ui.guard import parse_listen, read_keys
    from ..ui.server import LivePage
    from ..ui.zones_file import ZonesFile

    host, port = parse_listen(ui.listen)
    zones_file = None
    if args.zones is not None and pipeline.zones is not None:   # the editor saves to --zones FILE
        check = _zone_check(args, config)
        zones_file = ZonesFile(args.zones, validate=lambda value: check(value, args.zones),
                               apply=pipeline.zones.request)
    live = LivePage(cameras, host, port, keys=read_keys(ui.key_file),
                    allow_unauthenticated=ui.allow_unauthenticated, certfile=ui.certfile,
                    keyfile=ui.keyfile, fps=ui.fps, max_width=ui.width,
                    log=lambda message: print(message, file=sys.stderr), zones_file=zones_file,
                    zones_shown=_zones_shown(config.zones) if zones_file is None else None)
    print(f"segpost run: live page on {live.url}", file=sys.stderr)
    return live


def _zones_shown(zones):
    """The config's zones as the page draws them (JSON), when there is no file to edit."""
    if zones is None:
        return {}
    return {str(camera): [{k: v for k, v in dataclasses.asdict(item).items() if v is not None} for item in items]
            for camera, items in zones.cameras.items()}


def _describe(sink) -> str:
    return getattr(sink, "shown_url", None) or ("stdout" if getattr(sink, "path", "-") == "-" else sink.path)


class ResumePoint:
    """Where each camera of an earlier run's --out file ends (--resume), and the tracks it left open."""

    def __init__(self, states=None, tracks=None):
        self.states, self.tracks = states or {}, tracks

    def start_index(self, camera: int) -> int:
        return self.states.get(camera, CameraState()).last_frame + 1

    def finished(self, camera: int) -> bool:
        return self.states.get(camera, CameraState()).finished

    def apply(self, runner) -> None:
        """Track ids continue after the earlier run's; its open tracks end before the first round."""
        for slot, (camera, _) in enumerate(runner.cameras):
            if runner.pipeline.tracker is not None:
                runner.pipeline.tracker.set_next_id(slot, max(1, self.states.get(camera, CameraState()).next_track_id))
        if self.tracks is not None:
            for camera in sorted(self.states):
                for record in self.tracks.ends(camera, "restart"):
                    runner.write(record)
            runner.flush()


def resume_point(args) -> ResumePoint:
    if not args.resume:
        return ResumePoint()
    if not args.out or args.out == "-" or args.rotate_mb or args.rotate_minutes:
        raise ValueError("--resume continues one --out file: give --out FILE, without --rotate-mb/--rotate-minutes")
    if not os.path.exists(args.out):
        return ResumePoint()
    cameras = list(range(len(args.source)))
    fd = os.open(args.out, os.O_RDWR)
    try:
        torn = truncate_torn_line(fd)
        states = recover(fd, cameras)
        tracks = open_tracks(fd)
    finally:
        os.close(fd)
    done = sum(state.finished for state in states.values())
    print(f"segpost run: resuming {args.out}: " + ", ".join(
        f"camera {c} {'finished' if s.finished else f'after frame {s.last_frame}'}" for c, s in states.items())
        + (f"; a torn last line ({torn} bytes) cut" if torn else ""), file=sys.stderr)
    if done == len(cameras):
        print("segpost run: every camera had finished already", file=sys.stderr)
    return ResumePoint(states, tracks)
