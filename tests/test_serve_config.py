"""The serve config: one declared model (unknown keys refused, each error naming its key, a JSON
Schema), safe by default (beyond loopback without api_keys it refuses to start, and says why),
keys never shown; the library core never imports pydantic."""
import json
import subprocess
import sys

import pytest

pytest.importorskip("pydantic", reason="the serve config needs pydantic (Ray Serve installs it): pip install "
                                       "'segpost[fleet]' (.ci/run does)")

from segpost.cli import main  # noqa: E402
from segpost.serve.config import load_serve_config, schema  # noqa: E402

PIPELINE = {"backend": "synthetic", "classes": ["red"]}
KEY = "config-key-" + "c" * 20


def write(tmp_path, **keys):
    (tmp_path / "serve.json").write_text(json.dumps({"pipeline": PIPELINE, **keys}))
    return str(tmp_path / "serve.json")


@pytest.mark.parametrize("key, value, message", [
    ("num_replicas", 0, r"num_replicas: Input should be greater than or equal to 1 \(got 0\)"),
    ("num_replicas", True, r"num_replicas: Input should be a valid integer \(got True\)"),
    ("gpus_per_replica", -1, r"gpus_per_replica: Input should be greater than or equal to 0 \(got -1\)"),
    ("round_timeout_s", 0, r"round_timeout_s: Input should be greater than or equal to 1 \(got 0\)"),
    ("batch_wait_ms", "soon", r"batch_wait_ms: Input should be a valid number \(got 'soon'\)"),
    ("http_port", 70000, r"http_port: Input should be less than or equal to 65535 \(got 70000\)"),
    ("autoscaling", 3, r"autoscaling: Input should be a valid dictionary \(got 3\)"),
    ("decode", "fast", r"decode: Input should be 'auto', 'gpu' or 'cpu' \(got 'fast'\)"),
    ("max_frames_per_request", 0, r"max_frames_per_request: Input should be greater than or equal to 1"),
    ("tls", {"certfile": "a.pem"}, r"tls.keyfile: Field required"),
    ("tls", {"certfile": "a.pem", "keyfile": "b.key"}, r"tls.certfile: no such file .*a.pem"),
    ("api_keys", ["too-short"], r"api_keys\[0\] is shorter than 16 characters"),
    ("api_keys", [7], r"api_keys.0: Input should be a valid string$"),
    ("api_keys", ["short-key-12345\n"], r"api_keys\[0\] is shorter than 16 characters"),   # 15 without the newline
    ("api_keys", [KEY, "two words " + KEY], r"api_keys\[1\] contains whitespace or control characters inside it"),
    ("replicas", 2, r"unknown key\(s\) \['replicas'\]")])
def test_serve_config_errors_name_the_key(tmp_path, key, value, message):
    (tmp_path / "serve.json").write_text(json.dumps({"pipeline": {"backend": "synthetic", "classes": ["red"]},
                                                     key: value}))
    with pytest.raises(ValueError, match=message):
        load_serve_config(str(tmp_path / "serve.json"))


@pytest.mark.parametrize("keys, exposed", [
    ({"host": "0.0.0.0"}, r"HTTP on 0\.0\.0\.0:8000"),
    ({"host": "::"}, r"HTTP on :::8000"),
    ({"host": "10.1.2.3", "http_port": 8443}, r"HTTP on 10\.1\.2\.3:8443"),
    ({"grpc_port": 9000}, r"gRPC on \[::\]:9000 \(Ray Serve's gRPC proxy binds every interface\)")])
def test_listening_beyond_loopback_without_keys_refuses_to_start(tmp_path, keys, exposed):
    with pytest.raises(ValueError, match=f"refusing to start: {exposed} would listen beyond loopback without "
                                         r"api_keys, so anyone who reaches the port could use the GPU"):
        load_serve_config(write(tmp_path, **keys))
    assert load_serve_config(write(tmp_path, **keys, api_keys=[KEY])).exposed()
    assert load_serve_config(write(tmp_path, **keys, allow_unauthenticated=True)).exposed()


def test_defaults_are_loopback_http_only(tmp_path, monkeypatch):
    config = load_serve_config(write(tmp_path))
    assert (config.host, config.grpc_port, config.api_keys, config.exposed()) == ("127.0.0.1", None, [], [])
    assert (config.max_body_bytes, config.max_frames_per_request, config.decode) == (16 << 20, 32, "auto")
    monkeypatch.setenv("SEGPOST_CONFIG_TEST_KEY", KEY)
    config = load_serve_config(write(tmp_path, api_keys=["${SEGPOST_CONFIG_TEST_KEY}"], host="0.0.0.0"))
    assert config.key_values() == [KEY] and KEY not in repr(config) and KEY not in str(config.model_dump())
    with pytest.raises(ValueError, match="environment variable SEGPOST_UNSET_KEY is not set"):
        load_serve_config(write(tmp_path, api_keys=["${SEGPOST_UNSET_KEY}"]))
    with pytest.raises(ValueError) as error:   # a key that fails validation is not echoed
        load_serve_config(write(tmp_path, api_keys=["short-secret"]))
    assert "short-secret" not in str(error.value)


def test_the_schema_is_printed_and_validates_the_same_keys(capsys):
    assert main(["serve", "--print-schema"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == schema() and printed["additionalProperties"] is False
    assert {"host", "api_keys", "allow_unauthenticated", "tls", "max_body_bytes", "max_frames_per_request",
            "decode", "grpc_port"} <= set(printed["properties"])
    assert printed["properties"]["decode"]["enum"] == ["auto", "gpu", "cpu"]
    assert printed["$defs"]["TlsConfig"]["additionalProperties"] is False


def test_the_library_core_does_not_import_nvimgcodec_or_ray():
    # pydantic is a base dependency since every setting is declared with it (segpost/_settings.py).
    code = ("import sys, segpost, segpost.pipeline, segpost.engines, segpost.config; "
            "print(sorted(m for m in ('nvidia.nvimgcodec', 'ray') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_a_key_read_from_a_file_with_its_newline_is_accepted(tmp_path, monkeypatch):
    """`echo KEY > serve.key` writes "KEY\\n"; a Kubernetes secret made from that file (or any tool
    that reads the file whole) puts the newline in the variable. The client presents "KEY": the
    configured key is taken without its surrounding whitespace, so it matches."""
    from segpost.serve.guard import RequestError

    (tmp_path / "serve.key").write_text(KEY + "\n")
    monkeypatch.setenv("SEGPOST_FILE_KEY", (tmp_path / "serve.key").read_text())
    other = "other-key-" + "o" * 20
    config = load_serve_config(write(tmp_path, api_keys=["${SEGPOST_FILE_KEY}", f" {other}\r\n"], host="0.0.0.0"))
    limits = config.limits()   # what start_serve gives every replica
    for key in (KEY, other):
        limits.check_key(f"Bearer {key}")
    assert config.key_values() == [KEY, other]
    for refused in (f"Bearer {KEY[:-1]}", "Bearer " + KEY + "x", f"Basic {KEY}", None):
        with pytest.raises(RequestError, match="a valid API key is required"):
            limits.check_key(refused)


def test_serve_without_the_fleet_extra_says_which_extra():
    # protobuf (the gRPC messages) comes with segpost[fleet]: without it, one line naming the extra
    # and exit status 2; the config's schema needs pydantic alone.
    code = ("import sys; sys.modules['google'] = None; from segpost.cli import main; "
            "sys.exit(main(sys.argv[1:]))")
    done = subprocess.run([sys.executable, "-c", code, "serve", "--print-proto"], capture_output=True, text=True)
    assert done.returncode == 2 and "pip install 'segpost[fleet]'" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    done = subprocess.run([sys.executable, "-c", code, "serve", "--print-schema"], capture_output=True, text=True)
    assert done.returncode == 0 and json.loads(done.stdout)["additionalProperties"] is False, done.stderr
