"""GPU decoding for segpost serve (nvImageCodec): JPEG batches decoded into device memory equal
OpenCV's pixels within JPEG decoders' rounding, the pipeline reads them in place with the same
detections as host frames, reused images keep VRAM constant, and a replica on the GPU chooses and
uses it end to end. Needs a CUDA device, CuPy and nvidia-nvimgcodec (pip install 'segpost[serve-gpu]')."""
import json

import numpy as np
import pytest

from segpost.io.image_decoder import Decoded, FrameDecoder
from segpost.io.image_header import inspect

pytestmark = pytest.mark.gpu
cv2 = pytest.importorskip("cv2")


def jpegs(count, height=1080, width=1920):
    from segpost.synthetic.scene import Scene

    frames = Scene([(height, width)] * count, num_classes=3, seed=4).render(0)[0]
    return frames, [cv2.imencode(".jpg", f, [cv2.IMWRITE_JPEG_QUALITY, 92])[1].tobytes() for f in frames]


@pytest.fixture(scope="module")
def gpu_decoder():
    pytest.importorskip("nvidia.nvimgcodec", reason="pip install 'segpost[serve-gpu]'")
    decoder = FrameDecoder("gpu", "cuda", threads=2, pool_size=8)
    yield decoder
    decoder.close()


def test_jpeg_batches_decode_into_device_memory_like_opencv(gpu_decoder, cp):
    _, data = jpegs(8)
    out = gpu_decoder.decode([(d, inspect(d)) for d in data])
    assert gpu_decoder.choice == "gpu" and all(isinstance(d, Decoded) and d.image is not None for d in out)
    for decoded, encoded in zip(out, data):
        assert isinstance(decoded.frame, cp.ndarray) and decoded.frame.shape == (1080, 1920, 3)
        reference = cv2.imdecode(np.frombuffer(encoded, np.uint8), cv2.IMREAD_COLOR).astype(np.int16)
        difference = np.abs(cp.asnumpy(decoded.frame).astype(np.int16) - reference)
        assert difference.mean() < 1.0 and np.percentile(difference, 99.9) <= 8, (difference.mean(), difference.max())
    gpu_decoder.recycle(out)


def test_the_pipeline_reads_decoded_frames_in_place_and_vram_stays_constant(gpu_decoder, cp):
    from segpost.config import build_from_config
    from segpost.pipeline import MultiCameraPipeline

    ve, dec, config = build_from_config({"backend": "synthetic", "classes": ["red", "green", "blue"],
                                         "max_cameras": 8, "max_frame_size": [1080, 1920]}, ".", "cuda")
    pipeline = MultiCameraPipeline(ve, dec, config)
    _, data = jpegs(8)
    items = [(d, inspect(d)) for d in data]
    free = []
    for step in range(30):
        decoded = gpu_decoder.decode(items)
        on_device = pipeline.process([d.frame for d in decoded])
        host = [cp.asnumpy(d.frame) for d in decoded]
        gpu_decoder.recycle(decoded)
        if step == 0:
            in_place = [[float(s) for s in r.scores] for r in on_device.cameras[0].by_class.values()]
            from_host = pipeline.process(host)
            assert in_place == [[float(s) for s in r.scores] for r in from_host.cameras[0].by_class.values()]
        cp.cuda.Device().synchronize()
        free.append(cp.cuda.runtime.memGetInfo()[0])
    assert max(free[5:]) - min(free[5:]) <= 4 << 20, [f >> 20 for f in free]


def test_a_gpu_replica_decodes_on_the_gpu_end_to_end(tmp_path):
    ray = pytest.importorskip("ray", reason="pip install 'segpost[fleet]'")
    pytest.importorskip("nvidia.nvimgcodec", reason="pip install 'segpost[serve-gpu]'")
    from brokers import free_port
    from local_ray import start_local_ray
    from segpost.serve.client import SegpostClient
    from segpost.serve.app import load_serve_config, start_serve, stop_serve

    key = "gpu-key-" + "g" * 24
    (tmp_path / "serve.json").write_text(json.dumps({
        "pipeline": {"backend": "synthetic", "classes": ["red", "green", "blue"], "max_cameras": 4,
                     "max_frame_size": [1080, 1920]},
        "gpus_per_replica": 1, "decode": "gpu", "http_port": free_port(), "api_keys": [key]}))
    start_local_ray(include_dashboard=False, log_to_driver=False, namespace="segpost-gpu")
    try:
        endpoints = start_serve(load_serve_config(str(tmp_path / "serve.json")))
        assert "nvImageCodec" in endpoints["decode"]
        frames, data = jpegs(6)
        client = SegpostClient(http=endpoints["http"], api_key=key)
        on_gpu = client.segment(data)
        from_host = [client.segment([cv2.imdecode(np.frombuffer(d, np.uint8), cv2.IMREAD_COLOR)])[0] for d in data]
        # nvJPEG and libjpeg-turbo round a few levels apart (pixels: the test above); the answers agree
        same = sum([d["class"] for d in a["detections"]] == [d["class"] for d in b["detections"]]
                   for a, b in zip(on_gpu, from_host))
        assert all(a["detections"] for a in on_gpu) and same >= len(data) - 1, (on_gpu, from_host)
        png = cv2.imencode(".png", frames[0])[1].tobytes()   # PNG: OpenCV threads, same replica
        assert client.segment([png])[0]["detections"]
    finally:
        stop_serve()
        ray.shutdown()
