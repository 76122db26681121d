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
                    ("round_frames", 4, _T.TYPE_INT32, False, None)],
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
    (Ray Serve's gRPC proxy takes this function)."""
    import grpc

    handler = grpc.unary_unary_rpc_method_handler(servicer.Segment, request_deserializer=SegmentRequest.FromString,
                                                  response_serializer=SegmentResponse.SerializeToString)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(f"{PACKAGE}.{SERVICE}", {METHOD: handler}),))


def proto_text() -> str:
    """The service as a .proto file, for clients in other languages."""
    names = {_T.TYPE_BYTES: "bytes", _T.TYPE_INT32: "int32", _T.TYPE_STRING: "string", _T.TYPE_FLOAT: "float"}
    lines = ['syntax = "proto3";', f"package {PACKAGE};", ""]
    for name, fields in _MESSAGES.items():
        lines.append(f"message {name} {{")
        for field_name, number, kind, repeated, type_name in fields:
            lines.append(f"  {'repeated ' if repeated else ''}{type_name or names[kind]} {field_name} = {number};")
        lines += ["}", ""]
    lines.append(f"service {SERVICE} {{\n  rpc {METHOD} (SegmentRequest) returns (SegmentResponse);\n}}")
    return "\n".join(lines) + "\n"


# -- the JSON form (HTTP) and the protobuf form (gRPC) of the same request and answer --------------

def request_from_json(body: Dict[str, Any]) -> Tuple[List[Dict[str, Any]], List[str], str]:
    """(frames as {"image": bytes} or {"raw": bytes, "shape": [H, W, 3]}, classes, masks); ValueError
    says what is wrong."""
    if not isinstance(body, dict) or not isinstance(body.get("frames"), list):
        raise ValueError('the request must be a JSON object with "frames": [...]')
    frames = []
    for i, frame in enumerate(body["frames"]):
        if not isinstance(frame, dict):
            raise ValueError(f"frames[{i}] must be an object with \"image\" or \"raw\" and \"shape\"")
        try:
            if "image" in frame:
                frames.append({"image": base64.b64decode(frame["image"], validate=True)})
            elif "raw" in frame:
                frames.append({"raw": base64.b64decode(frame["raw"], validate=True), "shape": frame.get("shape")})
            else:
                raise ValueError(f"frames[{i}] needs \"image\" (JPEG/PNG) or \"raw\" with \"shape\"")
        except (TypeError, ValueError) as exc:
            raise ValueError(f"frames[{i}]: {exc}") from None
    classes = body.get("classes") or []
    if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes):
        raise ValueError('"classes" must be a list of class names')
    return frames, classes, body.get("masks") or "rle"


def request_from_proto(request: Any) -> Tuple[List[Dict[str, Any]], List[str], str]:
    frames = [{"image": f.image} if f.image else {"raw": f.raw, "shape": list(f.shape)} for f in request.frames]
    return frames, list(request.classes), request.masks or "rle"


def answer_to_json(frames: List[Dict[str, Any]]) -> Dict[str, Any]:
    out = []
    for frame in frames:
        detections = []
        for d in frame["detections"]:
            mask = d["mask"]
            if mask is not None and "packed" in mask:
                mask = {"size": mask["size"], "packed": base64.b64encode(mask["packed"]).decode("ascii")}
            detections.append({"class": d["class"], "score": d["score"], "box": d["box"], "mask": mask})
        out.append({"height": frame["height"], "width": frame["width"], "round_frames": frame["round_frames"],
                    "detections": detections})
    return {"frames": out}


def answer_to_proto(frames: List[Dict[str, Any]]) -> Any:
    response = SegmentResponse()
    for frame in frames:
        result = response.frames.add(height=frame["height"], width=frame["width"], round_frames=frame["round_frames"])
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
    """A gRPC answer in the JSON form (what segpost.fleet.client returns for both transports)."""
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
        frames.append({"height": f.height, "width": f.width, "round_frames": f.round_frames, "detections": detections})
    return frames
