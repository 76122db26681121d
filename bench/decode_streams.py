"""Decoding N concurrent camera streams of a video file: NVDEC (GPU) against OpenCV (CPU), each
through segpost's own camera sources (a decoding thread per camera, as `segpost run` uses them).

    python bench/decode_streams.py --video 1080p25.mp4 --streams 1 8 16 32 [--preprocess]

Per decoder and stream count: frames/s in total, the process's CPU seconds per second (all
threads; 1.0 = one core busy), and, for NVDEC, the decoder utilization nvidia-smi reports
(sampled every 100 ms). --preprocess also runs every round of frames through the GPU
preprocessing (NV12 or BGR -> [N, 3, 1008, 1008] fp16, antialias), the "decoded and
preprocessed" figure. Prints a markdown table; --json writes the rows.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time

import numpy as np

import segpost
from segpost.io.sources import CameraSource, decoder_factory
from tables import print_table, save_json  # noqa: E402  (bench/, this script's folder)


class DecoderUtilization:
    """nvidia-smi's decoder utilization, sampled in the background."""

    def __init__(self):
        self.samples, self._stop = [], threading.Event()
        try:
            self._process = subprocess.Popen(["nvidia-smi", "--query-gpu=utilization.decoder", "--format=csv,noheader,nounits",
                                              "-lms", "100"], stdout=subprocess.PIPE, text=True)
        except OSError:
            self._process = None
            return
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self._process.stdout:
            try:
                self.samples.append(float(line.split(",")[0]))
            except ValueError:
                pass

    def stop(self):
        if self._process is not None:
            self._process.terminate()
        busy = self.samples[2:] or self.samples
        return float(np.mean(busy)) if busy else None


def run(video: str, streams: int, decode: str, preprocess: bool, realtime: float = 0.0) -> dict:
    """realtime > 0: rounds paced at that many per second (cameras at their frame rate), so the CPU
    use is what live cameras cost, not what decoding as fast as possible costs."""
    open_decoder, why = decoder_factory(decode)
    pre = stream = None
    if preprocess:
        import cupy

        pre = segpost.Preprocessor(max_frames=streams, max_frame_size=(1080, 1920), dtype=np.float16, device="cuda")
        stream = cupy.cuda.Stream(non_blocking=True)
    utilization = DecoderUtilization() if decode == "gpu" else None
    cpu0, wall0 = time.process_time(), time.perf_counter()
    sources = [CameraSource(video, open_decoder, live=False) for _ in range(streams)]
    frames, rounds = 0, 0
    while True:
        if realtime:
            time.sleep(max(0.0, wall0 + rounds / realtime - time.perf_counter()))
        got = [s.read() for s in sources]
        images = [g.image for g in got if g is not None]
        if not images:
            break
        frames += len(images)
        rounds += 1
        if pre is not None:
            pre.run(images, stream=stream)
            pre.wait_released()
    if stream is not None:
        stream.synchronize()
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    errors = [s.error for s in sources if s.error]
    for s in sources:
        s.close()
    return {"decode": decode, "streams": streams, "preprocess": preprocess, "realtime": realtime, "frames": frames,
            "rounds": rounds,
            "seconds": wall, "fps": frames / wall, "cpu_cores": cpu / wall,
            "decoder_utilization_pct": utilization.stop() if utilization else None,
            "decoder": sources[0].decoder_description, "why": why, "errors": errors[:3]}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--video", required=True)
    parser.add_argument("--streams", type=int, nargs="+", default=[1, 8, 16, 32])
    parser.add_argument("--decoders", nargs="+", default=["gpu", "cpu"])
    parser.add_argument("--preprocess", action="store_true")
    parser.add_argument("--realtime", type=float, default=0.0, metavar="FPS", help="pace the rounds at FPS per camera")
    parser.add_argument("--json")
    args = parser.parse_args()
    rows = []
    for decode in args.decoders:
        for n in args.streams:
            try:
                rows.append(run(args.video, n, decode, args.preprocess, args.realtime))
            except Exception as exc:  # report and go on with the other rows
                rows.append({"decode": decode, "streams": n, "error": f"{type(exc).__name__}: {exc}"})
            print(json.dumps(rows[-1]), flush=True)
    if args.json:
        save_json(args.json, rows)

    def cells(r):
        util = "" if r["decoder_utilization_pct"] is None else f"{r['decoder_utilization_pct']:.0f}%"
        paced = f"{r['realtime']:g}" if r["realtime"] else "as fast as possible"
        return [r["decode"], str(r["streams"]), "yes" if r["preprocess"] else "no", paced, f"{r['fps']:.0f}",
                f"{r['cpu_cores']:.2f}", util, r["decoder"]]

    print_table(["decoder", "streams", "preprocess", "paced at (fps)", "frames/s", "CPU cores busy",
                 "NVDEC utilization", "decoder"], rows, cells, ["decode", "streams"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
