"""The frame-submission API of ``segpost serve``: its messages (gRPC, protobuf) and their JSON form
(HTTP), one definition for both.

    service segpost.v1.Segmentation { rpc Segment(SegmentRequest) returns (SegmentResponse); }

A request carries frames (JPEG/PNG bytes in ``image``, or raw BGR uint8 pixels in ``raw`` with
``shape`` [H, W, 3]), optionally a subset of the served classes, and the mask encoding: "rle"
(COCO run lengths, the default), "packed" (numpy.packbits of the H x W mask, row-major) or
"none". The answer has, per frame, its size and per detection its class, score, box (x0, y0, x1,
y1 pixels) and mask. The message classes are built from a descriptor at import (no generated
code to keep in step with the protobuf runtime); ``proto_text()`` writes the .proto for clients
in other languages.
"""
from __future__ import annotations

import base64
from typing import Any, Dict, List, Tuple

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

PACKAGE, SERVICE, METHOD = "segpost.v1", "Segmentation", "Segment"
MASK_ENCODINGS = ("rle", "packed", "none")

_T = descriptor_pb2.FieldDescriptorProto
# message -> fields (name, number, type, repeated, message type name)
_MESSAGES = {
    "Frame": [("image", 1, _T.TYPE_BYTES, False, None), ("raw", 2, _T.TYPE_BYTES, False, None),
              ("shape", 3, _T.TYPE_INT32, True, None)],
    "SegmentRequest": [("frames", 1, _T.TYPE_MESSAGE, True, "Frame"), ("classes", 2, _T.TYPE_STRING, True, None),
                       ("masks", 3, _T.TYPE_STRING, False, None)],
    "Mask": [("size", 1, _T.TYPE_INT32, True, None), ("counts", 2, _T.TYPE_STRING, False, None),
             ("packed", 3, _T.TYPE_BYTES, False, None)],
    "Detection": [("class_name", 1, _T.TYPE_STRING, False, None), ("score", 2, _T.TYPE_FLOAT, False, None),
                  ("box", 3, _T.TYPE_FLOAT, True, None), ("mask", 4, _T.TYPE_MESSAGE, False, "Mask")],
    "FrameResult": [("height", 1, _T.TYPE_INT32, False, None), ("width", 2, _T.TYPE_INT32, False, None),
                    ("detections", 3, _T.TYPE_MESSAGE, True, "Detection"),
                    ("round_frames", 4, _T.TYPE_INT32, False, None), ("round", 5, _T.TYPE_INT64, False, None),
                    ("replica", 6, _T.TYPE_STRING, False, None)],
    "SegmentResponse": [("frames", 1, _T.TYPE_MESSAGE, True, "FrameResult")],
}


def _file_descriptor() -> descriptor_pb2.FileDescriptorProto:
    proto = descriptor_pb2.FileDescriptorProto(name="segpost/v1/segmentation.proto", package=PACKAGE, syntax="proto3")
    for name, fields in _MESSAGES.items():
        message = proto.message_type.add(name=name)
        for field_name, number, kind, repeated, type_name in fields:
            field = message.field.add(name=field_name, number=number, type=kind,
                                      label=_T.LABEL_REPEATED if repeated else _T.LABEL_OPTIONAL)
            if type_name:
                field.type_name = f".{PACKAGE}.{type_name}"
    service = proto.service.add(name=SERVICE)
    service.method.add(name=METHOD, input_type=f".{PACKAGE}.SegmentRequest", output_type=f".{PACKAGE}.SegmentResponse")
    return proto


def _classes() -> Dict[str, Any]:
    pool = descriptor_pool.Default()
    try:
        pool.FindFileByName("segpost/v1/segmentation.proto")
    except KeyError:
        pool.Add(_file_descriptor())
    classes = {}
    for name in _MESSAGES:
        cls = message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{PACKAGE}.{name}"))
        cls.__module__, cls.__qualname__ = __name__, name   # pickled by reference (Ray moves requests)
        classes[name] = cls
    return classes


_CLASSES = _classes()
Frame = _CLASSES["Frame"]
SegmentRequest = _CLASSES["SegmentRequest"]
Mask = _CLASSES["Mask"]
Detection = _CLASSES["Detection"]
FrameResult = _CLASSES["FrameResult"]
SegmentResponse = _CLASSES["SegmentResponse"]
FULL_METHOD = f"/{PACKAGE}.{SERVICE}/{METHOD}"


def add_SegmentationServicer_to_server(servicer: Any, server: Any) -> None:  # noqa: N802 (gRPC's naming)
    """What protoc's generated code would define: registers ``servicer.Segment`` on a gRPC server
    (Ray Serve's gRPC proxy takes this function). The request reaches the servicer as its raw bytes
    (no deserializer): the replica checks its size and structure before parsing it, and answers a
    message that does not parse with INVALID_ARGUMENT (a deserializer's failure would be INTERNAL)."""
    import grpc

    handler = grpc.unary_unary_rpc_method_handler(servicer.Segment,
                                                  response_serializer=SegmentResponse.SerializeToString)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(f"{PACKAGE}.{SERVICE}", {METHOD: handler}),))


def proto_text() -> str:
    """The service as a .proto file, for clients in other languages."""
    names = {_T.TYPE_BYTES: "bytes", _T.TYPE_INT32: "int32", _T.TYPE_INT64: "int64", _T.TYPE_STRING: "string",
             _T.TYPE_FLOAT: "float"}
    lines = ['syntax = "proto3";', f"package {PACKAGE};", ""]
    for name, fields in _MESSAGES.items():
        lines.append(f"message {name} {{")
        for field_name, number, kind, repeated, type_name in fields:
            lines.append(f"  {'repeated ' if repeated else ''}{type_name or names[kind]} {field_name} = {number};")
        lines += ["}", ""]
    lines.append(f"service {SERVICE} {{\n  rpc {METHOD} (SegmentRequest) returns (SegmentResponse);\n}}")
    return "\n".join(lines) + "\n"


# -- the JSON form (HTTP) and the protobuf form (gRPC) of the same request and answer --------------

def request_from_json(body: Any, max_frames: int) -> Tuple[List[Dict[str, Any]], List[str], str]:
    """(frames as {"image": bytes} or {"raw": bytes, "shape": [...]}, classes, masks); ValueError
    says what is wrong. At most `max_frames` frames are looked at."""
    if not isinstance(body, dict) or not isinstance(body.get("frames"), list):
        raise ValueError('the request must be a JSON object with "frames": [...]')
    unknown = sorted(set(body) - {"frames", "classes", "masks"})
    if unknown:
        raise ValueError(f"unknown request key(s) {unknown[:5]}; a request has \"frames\", \"classes\", \"masks\"")
    _check_count(len(body["frames"]), max_frames)
    frames = []
    for i, frame in enumerate(body["frames"]):
        if not isinstance(frame, dict) or len(frame.keys() & {"image", "raw"}) != 1 or set(frame) - {"image", "raw", "shape"}:
            raise ValueError(f"frames[{i}] must be an object with \"image\" (base64 JPEG/PNG), or \"raw\" (base64 "
                             "BGR pixels) and \"shape\"")
        key = "image" if "image" in frame else "raw"
        if not isinstance(frame[key], str):
            raise ValueError(f"frames[{i}].{key} must be a base64 string, got {type(frame[key]).__name__}")
        try:
            data = base64.b64decode(frame[key], validate=True)
        except ValueError as exc:
            raise ValueError(f"frames[{i}].{key}: not base64 ({exc})") from None
        frames.append({"image": data} if key == "image" else {"raw": data, "shape": frame.get("shape")})
    classes = body.get("classes", [])
    if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes):
        raise ValueError('"classes" must be a list of class names')
    masks = body.get("masks", "rle")
    if not isinstance(masks, str):
        raise ValueError(f'"masks" must be one of {MASK_ENCODINGS}')
    return frames, classes, masks


def request_from_bytes(data: bytes, max_frames: int) -> Tuple[List[Dict[str, Any]], List[str], str]:
    """A serialized SegmentRequest -> what request_from_json gives; ValueError says what is wrong.
    Its top-level fields are counted on the wire before it is parsed, so a message of a million
    empty frames is refused without building them."""
    from google.protobuf.message import DecodeError

    _check_wire(data, max_frames)
    try:
        request = SegmentRequest.FromString(data)
    except DecodeError as exc:
        raise ValueError(f"not a segpost.v1.SegmentRequest ({exc})") from None
    _check_count(len(request.frames), max_frames)
    frames = []
    for f in request.frames:
        frames.append({"image": f.image} if f.image else
                      {"raw": f.raw, "shape": list(f.shape) if len(f.shape) <= 3 else ["more than 3 values"]})
    return frames, list(request.classes), request.masks or "rle"


def _check_count(count: int, max_frames: int) -> None:
    if count > max_frames:
        raise ValueError(f"the request has more than {max_frames} frames (this server's max_frames_per_request)")


def _check_wire(data: bytes, max_frames: int, max_other: int = 1024) -> None:
    """Walks the top-level fields of a serialized request: ValueError for a broken wire format, more
    than `max_frames` frames (field 1) or more than `max_other` other fields."""
    pos, n, frames, other = 0, len(data), 0, 0
    while pos < n:
        tag, pos = _varint(data, pos)
        kind = tag & 7
        if kind == 0:
            _, pos = _varint(data, pos)
        elif kind == 2:
            length, pos = _varint(data, pos)
            pos += length
        elif kind in (1, 5):
            pos += 8 if kind == 1 else 4
        else:
            raise ValueError(f"not a segpost.v1.SegmentRequest (wire type {kind} at byte {pos})")
        if pos > n:
            raise ValueError("not a segpost.v1.SegmentRequest (a field runs past the end of the message)")
        if tag >> 3 == 1:
            frames += 1
            _check_count(frames, max_frames)
        else:
            other += 1
            if other > max_other:
                raise ValueError(f"the request has more than {max_other} classes")


def _varint(data: bytes, pos: int) -> Tuple[int, int]:
    value, shift = 0, 0
    while pos < len(data) and shift < 64:
        byte = data[pos]
        value |= (byte & 0x7F) << shift
        pos += 1
        if not byte & 0x80:
            return value, pos
        shift += 7
    raise ValueError("not a segpost.v1.SegmentRequest (a truncated varint)")


def answer_to_json(frames: List[Dict[str, Any]]) -> Dict[str, Any]:
    """The HTTP answer: each detection is its record (io/records.py), a packed mask in base64."""
    out = []
    for frame in frames:
        detections = []
        for d in frame["detections"]:
            mask = d["mask"]
            if mask is not None and "packed" in mask:
                mask = {"size": mask["size"], "packed": base64.b64encode(mask["packed"]).decode("ascii")}
            detections.append({**d, "mask": mask})
        out.append({"height": frame["height"], "width": frame["width"], "round_frames": frame["round_frames"],
                    "round": frame["round"], "replica": frame["replica"], "detections": detections})
    return {"frames": out}


def answer_to_proto(frames: List[Dict[str, Any]]) -> Any:
    """The gRPC answer: each detection record's fields (io/records.py) in a Detection message."""
    response = SegmentResponse()
    for frame in frames:
        result = response.frames.add(height=frame["height"], width=frame["width"], round_frames=frame["round_frames"],
                                     round=frame["round"], replica=frame["replica"])
        for d in frame["detections"]:
            detection = result.detections.add(class_name=d["class"], score=d["score"], box=d["box"])
            if d["mask"] is not None:
                detection.mask.size.extend(d["mask"]["size"])
                if "counts" in d["mask"]:
                    detection.mask.counts = d["mask"]["counts"]
                else:
                    detection.mask.packed = d["mask"]["packed"]
    return response


def answer_from_proto(response: Any) -> List[Dict[str, Any]]:
    """A gRPC answer in the JSON form (what segpost.serve.client returns for both transports)."""
    frames = []
    for f in response.frames:
        detections = []
        for d in f.detections:
            mask = None
            if d.HasField("mask"):
                mask = {"size": list(d.mask.size)}
                mask.update({"counts": d.mask.counts} if d.mask.counts else
                            {"packed": base64.b64encode(d.mask.packed).decode("ascii")})
            detections.append({"class": d.class_name, "score": d.score, "box": list(d.box), "mask": mask})
        frames.append({"height": f.height, "width": f.width, "round_frames": f.round_frames, "round": f.round,
                       "replica": f.replica, "detections": detections})
    return frames
