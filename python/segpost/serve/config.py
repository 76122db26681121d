"""The serve config (JSON), one declared model: unknown keys are refused, every error names its key,
and ``segpost serve --print-schema`` prints its JSON Schema.

    {
      "pipeline": "segpost.json",          # a `segpost run` config (file or object); max_cameras = the batch
      "host": "127.0.0.1",                 # HTTP bind address; beyond loopback needs api_keys
      "http_port": 8000,
      "grpc_port": null,                   # e.g. 9000; Ray Serve's gRPC proxy listens on every interface
      "api_keys": ["${SEGPOST_KEY}"],      # clients send "Authorization: Bearer KEY" (HTTP header, gRPC metadata);
                                           # surrounding whitespace (a key file's newline) is dropped
      "allow_unauthenticated": false,      # true: listen beyond loopback without keys (a trusted network)
      "tls": {"certfile": "server.pem", "keyfile": "server.key"},   # HTTPS
      "max_body_bytes": 16777216, "max_frames_per_request": 32, "body_timeout_s": 30,
      "decode": "auto",                    # gpu: nvImageCodec (JPEG) | cpu: OpenCV | auto
      "decode_threads": 4,                 # CPU decoding threads (PNG, and every image with decode cpu)
      "num_replicas": 1,                   # or "autoscaling": {"min_replicas": 1, "max_replicas": 4, ...}
      "gpus_per_replica": 1, "cpus_per_replica": 1,
      "batch_wait_ms": 10,                 # how long a replica waits to fill a round
      "round_timeout_s": 60                # a round running longer marks the replica unhealthy
    }

``${NAME}`` values come from the environment (keep keys out of files). Paths are relative to
this file. Images larger than the pipeline's max_frame_size are refused from their header.
"""
from __future__ import annotations

import ipaddress
import os
from typing import Any, Dict, List, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, SecretStr, field_validator, model_validator

from ..config import read_app_config, validated
from .guard import Limits, key_digests

_SECRET_KEYS = ("api_keys", "keyfile_password")
_MIN_KEY_LENGTH = 16


class TlsConfig(BaseModel):
    """HTTPS through Ray Serve's HTTPOptions (uvicorn)."""

    model_config = ConfigDict(extra="forbid", strict=True)
    certfile: str = Field(description="PEM certificate chain of the server")
    keyfile: str = Field(description="PEM private key of the server")
    keyfile_password: Optional[SecretStr] = Field(None, description="password of an encrypted keyfile")
    # No ca_certs: Ray Serve 2.x passes uvicorn's ssl_ca_certs but not ssl_cert_reqs, so client
    # certificates would never be requested. Require them at a proxy in front (README).


class ServeConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    pipeline: Union[str, Dict[str, Any]] = Field(description="a `segpost run` config file, or the object inline")
    host: str = Field("127.0.0.1", description="HTTP bind address")
    http_port: int = Field(8000, ge=1, le=65535, description="HTTP port")
    grpc_port: Optional[int] = Field(None, ge=1, le=65535,
                                     description="gRPC port; off when null. Ray Serve's gRPC proxy binds [::] (every "
                                                 "interface) and has no TLS: put a TLS-terminating proxy in front")
    api_keys: List[SecretStr] = Field([], description="accepted bearer keys (at least 16 characters each)")
    allow_unauthenticated: bool = Field(False, description="listen beyond loopback without api_keys")
    tls: Optional[TlsConfig] = Field(None, description="HTTPS: certfile and keyfile (paths relative to this file)")
    max_body_bytes: int = Field(16 << 20, ge=1024, le=1 << 31, description="largest request body or gRPC message")
    max_frames_per_request: int = Field(32, ge=1, le=1024, description="images one request may carry")
    body_timeout_s: float = Field(30.0, gt=0, description="time allowed to receive a request body")
    decode: Literal["auto", "gpu", "cpu"] = Field("auto", description="gpu: nvImageCodec (JPEG); cpu: OpenCV; auto")
    decode_threads: int = Field(4, ge=1, le=64, description="CPU decoding threads (PNG, and all with decode cpu)")
    num_replicas: int = Field(1, ge=1, description="replicas (one pipeline each); or autoscaling")
    autoscaling: Optional[Dict[str, Any]] = Field(None, description="Ray Serve's autoscaling_config")
    gpus_per_replica: float = Field(1.0, ge=0, description="GPU share each replica reserves")
    cpus_per_replica: float = Field(1.0, ge=0, description="CPUs each replica reserves")
    batch_wait_ms: float = Field(10.0, ge=0, description="how long a replica waits to fill a round")
    round_timeout_s: float = Field(60.0, ge=1, description="a round running longer marks the replica unhealthy")

    _pipeline_dir: str = PrivateAttr(".")

    @field_validator("api_keys", mode="after")
    @classmethod
    def _bare_keys(cls, keys: List[SecretStr]) -> List[SecretStr]:
        """Keys without surrounding whitespace: a key read from a file (`echo KEY > file`, a
        Kubernetes secret made from a file) ends with a newline that no client sends, and the
        presented token is stripped, so such a key would pass the length check and never match."""
        bare = []
        for i, key in enumerate(keys):
            value = key.get_secret_value().strip()
            if any(c.isspace() or not c.isprintable() for c in value):
                raise ValueError(f"api_keys[{i}] contains whitespace or control characters inside it")
            bare.append(SecretStr(value))
        return bare

    @model_validator(mode="after")
    def _safe(self) -> "ServeConfig":
        for i, key in enumerate(self.api_keys):
            if len(key.get_secret_value()) < _MIN_KEY_LENGTH:
                raise ValueError(f"api_keys[{i}] is shorter than {_MIN_KEY_LENGTH} characters")
        exposed = self.exposed()
        if exposed and not self.api_keys and not self.allow_unauthenticated:
            raise ValueError(
                f"refusing to start: {' and '.join(exposed)} would listen beyond loopback without api_keys, so anyone "
                "who reaches the port could use the GPU and read the results. Set \"api_keys\" (clients send "
                "\"Authorization: Bearer KEY\"), or keep \"host\" on 127.0.0.1 without \"grpc_port\", or set "
                "\"allow_unauthenticated\": true on a network you trust")
        return self

    def exposed(self) -> List[str]:
        """What would listen beyond loopback."""
        out = [] if _is_loopback(self.host) else [f"HTTP on {self.host}:{self.http_port}"]
        if self.grpc_port is not None:
            out.append(f"gRPC on [::]:{self.grpc_port} (Ray Serve's gRPC proxy binds every interface)")
        return out

    @property
    def pipeline_dir(self) -> str:
        return self._pipeline_dir

    def key_values(self) -> List[str]:
        return [key.get_secret_value() for key in self.api_keys]

    def limits(self) -> Limits:
        """What each replica checks before it works on a request."""
        return Limits(key_digests(self.key_values()), self.max_body_bytes, self.max_frames_per_request,
                      self.body_timeout_s)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def schema() -> Dict[str, Any]:
    """The serve config's JSON Schema."""
    return ServeConfig.model_json_schema()


def load_serve_config(path: str) -> ServeConfig:
    """The serve config file, checked (ValueError naming the file and the key at fault)."""
    raw, pipeline, base = read_app_config(path, ServeConfig, "serve config file")
    folder = os.path.dirname(os.path.abspath(path))
    if isinstance(raw.get("tls"), dict):
        raw["tls"] = {k: (os.path.join(folder, v) if k in ("certfile", "keyfile") and isinstance(v, str)
                          else v) for k, v in raw["tls"].items()}
    config = validated(ServeConfig, {**raw, "pipeline": pipeline}, path, secret_keys=_SECRET_KEYS)
    if config.tls is not None:
        for key in ("certfile", "keyfile"):
            file = getattr(config.tls, key)
            if not os.path.isfile(file):
                raise ValueError(f"{path}: tls.{key}: no such file {file}")
    config._pipeline_dir = base
    return config
