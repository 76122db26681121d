"""A small client for ``segpost serve``, over HTTP (JSON) or gRPC (``pip install segpost[fleet]``).

    from segpost.serve.client import SegpostClient
    client = SegpostClient(http="http://gpu-box:8000/segment")        # or grpc="gpu-box:9000"
    frames = client.segment([bgr_frame, open("shot.jpg", "rb").read()], classes=["person"])
    for frame in frames:
        for d in frame["detections"]:    # d["class"], d["score"], d["box"] (x0, y0, x1, y1 px), d["mask"]
            mask = segpost.decode_coco_rle(d["mask"])                  # (H, W) bool

Frames are BGR uint8 (H, W, 3) arrays (sent as raw pixels) or encoded JPEG/PNG bytes. Errors the
server reports (bad input, a missing key) raise SegpostError with its message and status.
``api_key`` is sent as "Authorization: Bearer KEY" (HTTP header, gRPC metadata); ``ca_file``
verifies the server's certificate (HTTPS, or gRPC over TLS through a proxy such as nginx).
"""
from __future__ import annotations

import base64
import json
import ssl
import urllib.error
import urllib.request
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from ..io.secrets import redact


class SegpostError(RuntimeError):
    def __init__(self, message: str, status: Any = None):
        super().__init__(message)
        self.status = status


class SegpostClient:
    def __init__(self, http: Optional[str] = None, grpc: Optional[str] = None, timeout: float = 60.0,
                 api_key: Optional[str] = None, ca_file: Optional[str] = None, grpc_tls: bool = False):
        """`grpc_tls`: the gRPC target speaks TLS (a TLS-terminating proxy in front of the server)."""
        if not http and not grpc:
            raise ValueError("give the server's http URL (http://host:8000/segment) or grpc target (host:9000)")
        self.http, self.grpc_target, self.timeout = http, grpc, timeout
        self._key, self._ca_file, self._grpc_tls = api_key, ca_file, grpc_tls
        self._channel = self._call = None

    def __repr__(self) -> str:   # never the key
        return (f"SegpostClient(http={redact(self.http) if self.http else None!r}, grpc={self.grpc_target!r}, "
                f"api_key={'***' if self._key else None})")

    def segment(self, frames: Sequence[Any], classes: Sequence[str] = (), masks: str = "rle",
                transport: Optional[str] = None) -> List[Dict[str, Any]]:
        """Per frame: {"height", "width", "round_frames", "detections": [...]}."""
        transport = transport or ("grpc" if self.grpc_target and not self.http else "http")
        if transport == "grpc":
            return self._segment_grpc(frames, classes, masks)
        return self._segment_http(frames, classes, masks)

    def _segment_http(self, frames, classes, masks) -> List[Dict[str, Any]]:
        body = {"frames": [_frame_json(f) for f in frames], "classes": list(classes), "masks": masks}
        headers = {"Content-Type": "application/json"}
        if self._key:
            headers["Authorization"] = f"Bearer {self._key}"
        request = urllib.request.Request(self.http, data=json.dumps(body).encode(), method="POST", headers=headers)
        context = ssl.create_default_context(cafile=self._ca_file) if self.http.startswith("https:") else None
        try:
            with urllib.request.urlopen(request, timeout=self.timeout, context=context) as response:
                return json.loads(response.read())["frames"]
        except urllib.error.HTTPError as error:
            text = error.read().decode(errors="replace")
            try:
                message = json.loads(text).get("error", text)
            except ValueError:
                message = text
            raise SegpostError(message, error.code) from None

    def _segment_grpc(self, frames, classes, masks) -> List[Dict[str, Any]]:
        try:
            import grpc

            from . import api
        except ImportError as exc:
            raise ValueError(f"the gRPC transport needs grpcio and protobuf: pip install 'segpost[fleet]' ({exc})") from None

        if self._call is None:
            options = [("grpc.max_send_message_length", 256 << 20), ("grpc.max_receive_message_length", 256 << 20)]
            if self._grpc_tls:
                roots = None
                if self._ca_file:
                    with open(self._ca_file, "rb") as f:
                        roots = f.read()
                self._channel = grpc.secure_channel(self.grpc_target, grpc.ssl_channel_credentials(roots), options=options)
            else:
                self._channel = grpc.insecure_channel(self.grpc_target, options=options)
            self._call = self._channel.unary_unary(api.FULL_METHOD, request_serializer=api.SegmentRequest.SerializeToString,
                                                   response_deserializer=api.SegmentResponse.FromString)
        request = api.SegmentRequest(classes=list(classes), masks=masks)
        for frame in frames:
            if isinstance(frame, (bytes, bytearray)):
                request.frames.add(image=bytes(frame))
            else:
                frame = np.ascontiguousarray(frame)
                request.frames.add(raw=frame.tobytes(), shape=list(frame.shape))
        try:
            metadata = (("authorization", f"Bearer {self._key}"),) if self._key else None
            return api.answer_from_proto(self._call(request, timeout=self.timeout, metadata=metadata))
        except grpc.RpcError as error:
            raise SegpostError(error.details() or str(error), error.code()) from None

    def close(self) -> None:
        if self._channel is not None:
            self._channel.close()


def _frame_json(frame: Any) -> Dict[str, Any]:
    if isinstance(frame, (bytes, bytearray)):
        return {"image": base64.b64encode(bytes(frame)).decode("ascii")}
    frame = np.ascontiguousarray(frame)
    return {"raw": base64.b64encode(frame.tobytes()).decode("ascii"), "shape": list(frame.shape)}
