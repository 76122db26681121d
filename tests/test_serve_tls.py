"""segpost serve over TLS, with certificates made here: HTTPS through Ray Serve's own HTTPOptions;
gRPC through the supported way, a TLS-terminating nginx (grpc_pass) in front of Ray Serve's gRPC
proxy, which has no TLS of its own (it binds [::]:PORT insecurely). The API key travels inside the
encrypted channel and is still required."""
import datetime
import ipaddress
import json
import os
import shutil
import ssl
import subprocess
import urllib.error
import urllib.request

import pytest

from local_ray import start_local_ray
from brokers import free_port, wait_for_port

pytest.importorskip("ray", reason="segpost serve runs on Ray Serve: pip install 'segpost[fleet]' (.ci/run does)")
grpc = pytest.importorskip("grpc", reason="gRPC needs grpcio: pip install 'segpost[fleet]' (.ci/run does)")
x509 = pytest.importorskip("cryptography.x509", reason="certificates are made with cryptography (Ray installs it; "
                                                       ".ci/run does)")

from segpost.serve.client import SegpostClient, SegpostError  # noqa: E402
from segpost.serve.app import load_serve_config, start_serve, stop_serve  # noqa: E402
from segpost.synthetic.scene import Scene  # noqa: E402

KEY = "tls-key-" + "t" * 24


def make_certificates(folder):
    """A CA and a server certificate for 127.0.0.1 / localhost it signed (PEM files)."""
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)

    def certificate(subject, issuer, key, signer, ca):
        builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(key.public_key())
                   .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
                   .not_valid_after(now + datetime.timedelta(days=1))
                   .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if not ca:
            builder = builder.add_extension(x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        return builder.sign(signer, hashes.SHA256())

    ca_key, server_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "segpost test CA")])
    ca = certificate(ca_name, ca_name, ca_key, ca_key, True)
    server = certificate(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]), ca_name, server_key, ca_key, False)
    paths = {name: os.path.join(folder, name) for name in ("ca.pem", "server.pem", "server.key")}
    for name, data in (("ca.pem", ca.public_bytes(serialization.Encoding.PEM)),
                       ("server.pem", server.public_bytes(serialization.Encoding.PEM)),
                       ("server.key", server_key.private_bytes(serialization.Encoding.PEM,
                                                               serialization.PrivateFormat.PKCS8,
                                                               serialization.NoEncryption()))):
        with open(paths[name], "wb") as f:
            f.write(data)
    return paths


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    import ray

    folder = tmp_path_factory.mktemp("tls")
    certificates = make_certificates(str(folder))
    (folder / "serve.json").write_text(json.dumps({
        "pipeline": {"backend": "synthetic", "classes": ["red", "green", "blue"], "max_frame_size": [120, 160],
                     "max_cameras": 2},
        "gpus_per_replica": 0, "cpus_per_replica": 0.5, "http_port": free_port(), "grpc_port": free_port(),
        "api_keys": [KEY], "tls": {"certfile": "server.pem", "keyfile": "server.key"}}))
    start_local_ray(num_cpus=4, include_dashboard=False, log_to_driver=False, namespace="segpost-tls")
    endpoints = start_serve(load_serve_config(str(folder / "serve.json")))
    yield endpoints, certificates, folder
    stop_serve()
    ray.shutdown()


FRAME = Scene([(120, 160)], num_classes=3, seed=11).render(0)[0][0]


def test_https_with_the_servers_certificate(server):
    endpoints, certificates, _ = server
    assert endpoints["http"].startswith("https://127.0.0.1:")
    answer = SegpostClient(http=endpoints["http"], api_key=KEY, ca_file=certificates["ca.pem"]).segment([FRAME])[0]
    assert answer["detections"] and (answer["height"], answer["width"]) == (120, 160)
    with pytest.raises(SegpostError, match="a valid API key is required"):   # TLS does not replace the key
        SegpostClient(http=endpoints["http"], ca_file=certificates["ca.pem"]).segment([FRAME])
    with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):   # a client that trusts another CA
        SegpostClient(http=endpoints["http"], api_key=KEY).segment([FRAME])
    with pytest.raises((urllib.error.URLError, ConnectionError)):   # plain HTTP gets no answer
        urllib.request.urlopen(endpoints["http"].replace("https:", "http:"), data=b"{}", timeout=10)
    context = ssl.create_default_context(cafile=certificates["ca.pem"])
    with urllib.request.urlopen(endpoints["http"].replace("/segment", "/healthz"), context=context, timeout=10) as r:
        assert r.status == 200


NGINX_CONF = """
daemon off;
pid {folder}/nginx.pid;
error_log {folder}/nginx-error.log;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {folder}/body;
    server {{
        listen 127.0.0.1:{port} ssl http2;
        ssl_certificate {certfile};
        ssl_certificate_key {keyfile};
        client_max_body_size 16m;
        location / {{ grpc_pass grpc://127.0.0.1:{grpc_port}; }}
    }}
}}
"""


def nginx_binary():
    return shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if os.path.exists(p)), None)


def test_grpc_over_tls_through_nginx_in_front(server):
    endpoints, certificates, folder = server
    binary = nginx_binary()
    if binary is None:
        pytest.skip("gRPC over TLS is tested through nginx (grpc_pass): apt-get install nginx (.ci/run does)")
    port = free_port()
    (folder / "nginx.conf").write_text(NGINX_CONF.format(
        folder=folder, port=port, certfile=certificates["server.pem"], keyfile=certificates["server.key"],
        grpc_port=endpoints["grpc"].rsplit(":", 1)[1]))
    nginx = subprocess.Popen([binary, "-c", str(folder / "nginx.conf"), "-p", str(folder)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        assert wait_for_port(port), nginx.stderr.read().decode() if nginx.poll() is not None else "nginx did not listen"
        secure = SegpostClient(grpc=f"localhost:{port}", api_key=KEY, ca_file=certificates["ca.pem"], grpc_tls=True)
        answer = secure.segment([FRAME] * 3)
        assert len(answer) == 3 and all(a["detections"] for a in answer)
        with pytest.raises(SegpostError, match="a valid API key is required") as error:
            SegpostClient(grpc=f"localhost:{port}", ca_file=certificates["ca.pem"], grpc_tls=True).segment([FRAME])
        assert error.value.status == grpc.StatusCode.UNAUTHENTICATED
        with pytest.raises(SegpostError) as error:   # plaintext to the TLS port: no answer
            SegpostClient(grpc=f"localhost:{port}", api_key=KEY, timeout=10).segment([FRAME])
        assert error.value.status == grpc.StatusCode.UNAVAILABLE
        secure.close()
    finally:
        nginx.terminate()
        nginx.wait(timeout=10)
