"""What the live page costs `segpost run` (issue 31's goals: with no viewer the round time is
unchanged; with one viewer of 8 cameras at most 0.1 CPU core).

    python bench/ui_cost.py --out DIR [--cameras 8] [--rounds 40] [--repeats 2] [--seconds 15]

1. Round time, no viewer: `segpost run --device cpu` on the synthetic scene (8 cameras, its
   synthetic engines unpaced), --max-rounds N, with and without `--ui 127.0.0.1:0`, the two runs
   side by side (a load that comes and goes hits both), `repeats` pairs; the median over the
   pairs of the ratio of their round p50 (what `segpost run` prints). On a loaded machine that
   ratio is mostly noise, so the hook's own time per round (the runner's record() and
   wants_frame() calls with nobody watching, 8 cameras x 40 detections) is timed in-process too.
2. CPU of the page with one viewer: one `segpost run --ui` whose rounds are paced by the synthetic
   engines' busy_ms (a sleep; its own CPU is then small and steady), its process CPU time (user +
   system, /proc) over `seconds` without a viewer, then over `seconds` with one WebSocket viewer
   watching every camera (headless chromium showing the page, or a WebSocket client; both outside
   the measured process). The difference
   of the two CPU/wall ratios is printed, but the rounds' own CPU moves more than the page costs
   on a loaded machine; the page's cost is read from its threads' CPU clocks (/api/state): the
   downscaling in the runner's thread, the encoder thread (JPEG + base64 + JSON), the server's
   event loop (WebSocket sends, health each second). With chromium: the frames the page drew, how
   many it had to show bare (a record of another frame: none by construction), its paint time, and
   the frame/overlay sync as the page shows it: after every paint and at every animation frame,
   the frame index of the pixels on a canvas minus the frame index of the overlay over them
   (window.__segpostSync), p95 and max in frames.
On a shared, loaded machine the numbers move from run to run: read the ratio, not the times.
Writes DIR/ui_cost.json and prints a Markdown table.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

sys.path.insert(0, os.path.dirname(__file__))
from tables import print_table, save_json  # noqa: E402

GOAL_CPU_CORES = 0.1


def make_video(path: str, frames: int) -> None:
    import cv2

    from segpost.synthetic.scene import Scene

    scene = Scene([(240, 320)], num_classes=2, seed=5)
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"FFV1"), 10, (320, 240))
    for index in range(frames):
        writer.write(scene.render(index)[0][0])
    writer.release()


def write_config(folder: str, cameras: int, busy_ms: float) -> str:
    path = os.path.join(folder, f"segpost-{busy_ms:g}.json")
    with open(path, "w") as f:
        json.dump({"backend": "synthetic", "classes": ["red", "green"], "max_cameras": cameras,
                   "max_frame_size": [480, 640], "track": {"max_age": 30, "min_hits": 3},
                   "busy_ms": [busy_ms, 0]}, f)
    return path


def command(config: str, video: str, cameras: int, out: str, *extra: str):
    sources = [arg for _ in range(cameras) for arg in ("--source", video)]
    return [sys.executable, "-m", "segpost", "run", "--device", "cpu", "--config", config, *sources, "--track",
            "--out", out, *extra]


def round_p50s(*commands) -> list:
    """Runs the commands at once (a load that comes and goes hits them alike); each one's round p50."""
    processes = [subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
                 for args in commands]
    out = []
    for process in processes:
        _, stderr = process.communicate(timeout=1800)
        found = re.search(r"round p50 ([0-9.]+) ms", stderr)
        if process.returncode != 0 or not found:
            raise RuntimeError(f"segpost run failed: {stderr[-2000:]}")
        out.append(float(found.group(1)))
    return out


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_share(pid: int, seconds: float) -> float:
    start_cpu, start = cpu_seconds(pid), time.monotonic()
    time.sleep(seconds)
    return (cpu_seconds(pid) - start_cpu) / (time.monotonic() - start)


def state(url: str):
    with urllib.request.urlopen(url + "api/state", timeout=10) as response:
        return json.load(response)


def viewer_cost(folder: str, video: str, cameras: int, seconds: float, busy_ms: float, browser=None):
    from websockets.sync.client import connect

    config = write_config(folder, cameras, busy_ms)
    process = subprocess.Popen(command(config, video, cameras, os.path.join(folder, "viewer.jsonl"),
                                       "--ui", "127.0.0.1:0"), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               text=True)
    try:
        url = None
        for line in process.stderr:
            if "live page on " in line:
                url = line.split("live page on ")[1].strip()
                break
        if url is None:
            raise RuntimeError("segpost run --ui did not start its page")
        threading.Thread(target=lambda: [None for _ in process.stderr], daemon=True).start()
        while not all(h["frames"] >= 3 for h in state(url)["health"].values()):
            time.sleep(0.2)
        idle = cpu_share(process.pid, seconds)
        idle_encodes = state(url)["ui"]["encodes"]
        received = {"frames": 0, "bytes": 0}
        stop = threading.Event()

        def watch():
            with connect(url.replace("http", "ws", 1) + "ws", origin=url.rstrip("/"), max_size=2**24) as feed:
                while not stop.is_set():
                    try:
                        text = feed.recv(timeout=0.5)
                    except TimeoutError:
                        continue
                    if text.startswith('{"type":"frame"'):
                        received["frames"] += 1
                        received["bytes"] += len(text)

        page = None
        if browser is not None:   # the page itself, in headless chromium
            page = browser.new_page(viewport={"width": 1600, "height": 900})
            page.goto(url)
            page.wait_for_selector("body[data-ready='1']", timeout=30000)
        else:
            client = threading.Thread(target=watch, daemon=True)
            client.start()
        time.sleep(2.0)   # the first frames, then the steady state
        before = state(url)["ui"]
        start = time.monotonic()
        watched = cpu_share(process.pid, seconds)
        after = state(url)["ui"]
        wall = time.monotonic() - start
        stop.set()
        in_browser = {}
        if page is not None:
            got = page.evaluate("() => window.segpost")
            paint = sorted(got["paintMs"])
            in_browser = {"drawn": got["drawn"], "mismatched": got["mismatched"], "dropped_in_browser": got["dropped"],
                          "paint_ms_p50": paint[len(paint) // 2] if paint else None,
                          "paint_ms_p95": paint[int(len(paint) * 0.95)] if paint else None,
                          # frame index shown minus overlay index shown, after every paint and at
                          # every animation frame (app.js's window.__segpostSync)
                          "sync": page.evaluate("() => window.__segpostSync.summary()")}
            page.close()
        else:
            client.join(5)
        threads = {key: (after[key] - before[key]) / wall for key in ("frame_cpu_s", "encoder_cpu_s", "server_cpu_s")}
        return {"cameras": cameras, "seconds": seconds, "busy_ms": busy_ms, "cpu_cores_no_viewer": idle,
                "cpu_cores_one_viewer": watched, "process_difference_cores": watched - idle,
                "ui_threads_cpu_cores": sum(threads.values()), "ui_threads": threads,
                "encodes_no_viewer": idle_encodes,
                "frames_per_second_sent": (after["encodes"] - before["encodes"]) / wall,
                "frames_received": received["frames"], "kib_per_second": received["bytes"] / 1024 / max(wall, 1e-9),
                "viewer": "chromium" if page is not None else "websocket client", **in_browser}
    finally:
        process.terminate()
        process.wait(30)


def hook_cost(cameras: int, rounds: int = 2000) -> float:
    """Microseconds a round spends in the live page's hook with nobody watching: the runner calls
    record() for each camera's frame record and asks wants_frame(); real records of the scene."""
    from segpost.ui.hub import LiveHub

    class Source:
        shown_url, stats = "scene.avi", {}

    record = {"round": 0, "camera": 0, "source": "scene.avi", "frame_index": 0, "pts": None,
              "frame_size": [1080, 1920], "detections": [{"class": "red", "score": 0.9, "box": [0, 0, 9, 9],
                                                           "track_id": 1, "mask": None}] * 40}
    hub = LiveHub([(camera, Source()) for camera in range(cameras)])
    try:
        started = time.perf_counter()
        for _ in range(rounds):
            for camera in range(cameras):
                hub.record(dict(record, camera=camera))
                hub.wants_frame(camera)
        return (time.perf_counter() - started) / rounds * 1e6
    finally:
        hub.close()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--cameras", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--busy-ms", type=float, default=200.0, help="the paced run's engine sleep per round")
    parser.add_argument("--chromium", default="/usr/bin/chromium",
                        help="the viewer: this browser (headless, through Playwright) showing the page; when absent, "
                             "a WebSocket client")
    args = parser.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    with tempfile.TemporaryDirectory() as folder:
        video = os.path.join(folder, "scene.avi")
        make_video(video, max(args.rounds + 10, 400))
        config = write_config(folder, args.cameras, 0.0)
        without, with_ui = [], []
        for _ in range(args.repeats):
            a, b = round_p50s(command(config, video, args.cameras, os.path.join(folder, "a.jsonl"),
                                      "--max-rounds", str(args.rounds)),
                              command(config, video, args.cameras, os.path.join(folder, "b.jsonl"),
                                      "--max-rounds", str(args.rounds), "--ui", "127.0.0.1:0"))
            without.append(a)
            with_ui.append(b)
        ratio = statistics.median(b / a for a, b in zip(without, with_ui))
        hook_us = hook_cost(args.cameras)
        if args.chromium and os.path.exists(args.chromium):
            from playwright.sync_api import sync_playwright

            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=args.chromium, args=["--no-sandbox"])
                viewer = viewer_cost(folder, video, args.cameras, args.seconds, args.busy_ms, browser)
                browser.close()
        else:
            viewer = viewer_cost(folder, video, args.cameras, args.seconds, args.busy_ms)
    result = {"round_ms_p50_without_ui": without, "round_ms_p50_with_ui_no_viewer": with_ui,
              "ratio_no_viewer": ratio, "hook_us_per_round_no_viewer": hook_us, "viewer": viewer,
              "goal_cpu_cores": GOAL_CPU_CORES}
    save_json(os.path.join(args.out, "ui_cost.json"), result)
    rows = [
        ["round p50 without --ui (ms, per run)", ", ".join(f"{v:.1f}" for v in without)],
        ["round p50 with --ui, no viewer (ms, per run)", ", ".join(f"{v:.1f}" for v in with_ui)],
        ["ratio (with / without, median of the pairs)", f"{ratio:.3f}"],
        [f"the hook's time per round, no viewer ({args.cameras} cameras, in-process, us)", f"{hook_us:.1f}"],
        ["encodes with no viewer", str(viewer["encodes_no_viewer"])],
        [f"process CPU, no viewer (cores; {args.cameras} cameras, paced rounds)",
         f"{viewer['cpu_cores_no_viewer']:.3f}"],
        ["process CPU, one viewer (cores)", f"{viewer['cpu_cores_one_viewer']:.3f}"],
        ["the difference (cores; noisy on a shared machine)", f"{viewer['process_difference_cores']:.3f}"],
        [f"the page's threads, one viewer (cores; goal <= {GOAL_CPU_CORES})", f"{viewer['ui_threads_cpu_cores']:.3f}"],
        ["  of which: downscale in the runner's thread / encoder / server loop",
         " / ".join(f"{viewer['ui_threads'][k]:.3f}" for k in ("frame_cpu_s", "encoder_cpu_s", "server_cpu_s"))],
        ["frames sent per second (all cameras)", f"{viewer['frames_per_second_sent']:.1f}"],
        ["KiB per second to the viewer", f"{viewer['kib_per_second']:.0f}"] if not viewer.get("drawn") else
        ["frames drawn by the page / drawn bare (another frame's record)",
         f"{viewer['drawn']} / {viewer['mismatched']}"],
        ["the page's paint time per frame, p50 / p95 (ms, in the browser)",
         "-" if viewer.get("paint_ms_p50") is None else f"{viewer['paint_ms_p50']:.2f} / {viewer['paint_ms_p95']:.2f}"]]
    sync = viewer.get("sync")
    if sync:
        rows.append(["frame/overlay sync in the browser: frames apart, p95 / max (samples)",
                     f"{sync['p95']} / {sync['max']} ({sync['samples']})"])
    print_table(["measure", "value"], [{"measure": m, "value": v} for m, v in rows],
                lambda row: [row["measure"], row["value"]], ["measure"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
