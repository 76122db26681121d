"""``segpost run``: a config's engines on your videos or streams, JSON Lines out."""
from __future__ import annotations

import dataclasses
import json
import sys
import time

from ..config import load_config
from ..io.records import frame_record
from ..io.sources import Source
from ..pipeline import MultiCameraPipeline
from ..postprocess import OutputKind
from .common import choose_device


def add_parser(commands) -> None:
    run = commands.add_parser("run", help="run a config's engines on videos or streams, write JSON Lines")
    run.add_argument("--config", required=True)
    run.add_argument("--source", action="append", required=True, help="video file, RTSP/HTTP URL or camera index; repeatable")
    run.add_argument("--out", default="-", help="JSON Lines output file (default: stdout)")
    run.add_argument("--masks", choices=("rle", "png", "none"), default="rle")
    run.add_argument("--mask-dir", default="masks", help="where --masks png writes its files")
    run.add_argument("--max-rounds", type=int, default=None)
    run.add_argument("--device", choices=("auto", "cuda", "cpu"), default="auto")
    run.set_defaults(handler=run_command)


def run_command(args) -> int:
    device = choose_device(args.device)
    vision_encoder, decoder, config = load_config(args.config, device=device)
    output = {"rle": OutputKind.RLE, "png": OutputKind.PACKED, "none": OutputKind.PACKED}[args.masks]
    sources = [Source(url) for url in args.source]
    if len(sources) > config.max_cameras:
        raise ValueError(f"{len(sources)} sources but the config allows max_cameras={config.max_cameras}")
    config = dataclasses.replace(config, max_cameras=len(sources), output=output)
    pipeline = MultiCameraPipeline(vision_encoder, decoder, config)
    out = sys.stdout if args.out == "-" else open(args.out, "w")
    reported = set()
    rounds = 0
    try:
        while args.max_rounds is None or rounds < args.max_rounds:
            frames, indices = [], []
            for camera, source in enumerate(sources):
                if source.error and camera not in reported:
                    reported.add(camera)
                    print(f"segpost run: camera {camera}: {source.error}; skipping it", file=sys.stderr)
                    out.write(json.dumps({"camera": camera, "source": source.url, "event": "error",
                                          "message": source.error}) + "\n")
                got = source.read()
                frames.append(None if got is None else got[1])
                indices.append(None if got is None else got[0])
            if all(s.finished for s in sources) and all(f is None for f in frames):
                break
            if all(f is None for f in frames):
                time.sleep(0.002)   # live streams have nothing new yet
                continue
            result = pipeline.process(frames)
            for camera, reason in result.skipped.items():
                out.write(json.dumps({"round": result.round_index, "camera": camera, "source": sources[camera].url,
                                      "event": "skipped", "message": reason}) + "\n")
            for camera, camera_result in sorted(result.cameras.items()):
                out.write(json.dumps(frame_record(result.round_index, camera, sources[camera].url, indices[camera],
                                                   camera_result, args.masks, args.mask_dir)) + "\n")
            rounds += 1
    finally:
        for source in sources:
            source.close()
        if out is not sys.stdout:
            out.close()
    if not rounds and all(s.error for s in sources):
        print("segpost run: error: no source could be read", file=sys.stderr)
        return 2
    print(f"segpost run: {rounds} rounds written to {args.out}", file=sys.stderr)
    return 0
