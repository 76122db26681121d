"""The live page's endpoints under a few hundred seeded random requests (the real server, over
TCP): oversized bodies, bodies that lie about their length, bad JSON, wrong types, deep nesting,
path tricks in URLs and camera ids, garbage request lines. Each malformed one gets a 4xx (never
a 5xx, never a file outside static/), the zones file only ever holds valid zones, and the server
keeps serving: the page, its state and a valid save still work afterwards."""
import json
import random
import socket
import urllib.error
import urllib.request

import pytest

pytest.importorskip("cv2")
pytest.importorskip("starlette", reason="the live page needs the ui extra (pip install segpost[ui])")
pytest.importorskip("uvicorn", reason="the live page needs the ui extra (pip install segpost[ui])")

from segpost.ui.server import MAX_ZONES_BODY, LivePage  # noqa: E402
from segpost.ui.zones_file import ZonesFile  # noqa: E402
from segpost.zones import ZoneSet  # noqa: E402

KEY = "a-key-for-the-fuzzed-page-0123456"
SEED = 31
REQUESTS = 300
GOOD = {"0": [{"name": "door", "polygon": [[0.1, 0.1], [0.5, 0.1], [0.5, 0.5]]}]}


class Source:
    """What the hub reads of a camera source: its shown URL and counters."""

    def __init__(self, index):
        self.shown_url, self.stats = f"file:///cameras/{index}.mp4", {}


@pytest.fixture
def page(tmp_path):
    path = tmp_path / "zones.json"
    path.write_text(json.dumps(GOOD))
    applied = []
    zones_file = ZonesFile(str(path), validate=lambda value: ZoneSet.from_value(
        value, cameras=["0", "1"], class_names=["person"], where=str(path)), apply=applied.append)
    live = LivePage([(0, Source(0)), (1, Source(1))], "127.0.0.1", 0, keys=[KEY], zones_file=zones_file)
    try:
        yield live, path, applied
    finally:
        live.close()


def request(live, method, path, body=None, headers=None):
    req = urllib.request.Request(f"http://127.0.0.1:{live.port}{path}", data=body, method=method,
                                 headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def raw(live, data: bytes) -> int:
    """Bytes as they are, on a socket of their own: the status of the answer (0: none)."""
    with socket.create_connection(("127.0.0.1", live.port), timeout=10) as s:
        try:
            s.sendall(data)
            s.shutdown(socket.SHUT_WR)
        except OSError:   # answered and closed before all was sent
            pass
        answer = b""
        try:
            while len(answer) < 65536:
                chunk = s.recv(4096)
                if not chunk:
                    break
                answer += chunk
        except OSError:   # a timeout, or reset after the answer
            pass
    first = answer.split(b"\r\n", 1)[0].split()
    return int(first[1]) if len(first) >= 2 and first[1].isdigit() else 0


def random_json(rng, depth=0):
    kinds = ["int", "float", "str", "bool", "null", "list", "dict"] if depth < 3 else ["int", "str", "null"]
    kind = rng.choice(kinds)
    if kind == "int":
        return rng.choice([0, -1, 1, 2**63, -2**70, 7])
    if kind == "float":
        return rng.choice([0.5, -0.1, 1.5, 1e308, 1e-320])
    if kind == "str":
        return rng.choice(["", "0", "1", "../0", "0/../1", "..%2f0", "\x00", "é" * 40, "a" * 100, "/etc/passwd"])
    if kind == "bool":
        return rng.choice([True, False])
    if kind == "null":
        return None
    if kind == "list":
        return [random_json(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    return {rng.choice(["camera", "zones", "name", "polygon", "line", "x"]): random_json(rng, depth + 1)
            for _ in range(rng.randint(0, 3))}


def bad_zones_body(rng):
    """A JSON body the save must refuse: wrong shape, wrong types, path tricks, invalid zones."""
    choice = rng.randrange(8)
    if choice == 0:
        return random_json(rng)
    if choice == 1:
        return {"camera": random_json(rng), "zones": random_json(rng)}
    if choice == 2:   # path tricks and unknown cameras as ids
        return {"camera": rng.choice(["../0", "0/../1", "..", "/", "%2e%2e", "0\x00", "2", "-1", "0" * 65]),
                "zones": GOOD["0"]}
    if choice == 3:   # a zone that is not one: out of the frame, too few points, a bow tie, unknown keys
        zone = rng.choice([{"name": "z", "polygon": [[0, 0], [2, 0], [0, 1]]},
                           {"name": "z", "polygon": [[0, 0], [1, 0]]},
                           {"name": "z", "polygon": [[0, 0], [1, 1], [1, 0], [0, 1]]},
                           {"name": "z", "polygon": [[0, 0], [1, 0], [0, 1]], "classes": ["car"]},
                           {"name": "z", "polygon": [[0, 0], [1, 0], [0, 1]], "script": "<x>"},
                           {"name": "", "line": [[0, 0], [0, 0]]},
                           {"name": "z", "polygon": [["a", 0], [1, 0], [0, 1]]}])
        return {"camera": rng.choice(["0", "1"]), "zones": [zone]}
    if choice == 4:
        return {"camera": "0", "zones": [GOOD["0"][0]] * 65}   # too many
    if choice == 5:
        return {"camera": "0", "zones": GOOD["0"], "extra": 1}
    if choice == 6:
        return {"camera": "0", "zones": [{"name": "z", "polygon": [[rng.random(), rng.random()]] * 40}]}
    return [GOOD]


PATHS = ["/static/../../../../etc/passwd", "/static/%2e%2e/%2e%2e/etc/passwd", "/static/..%2f..%2fserver.py",
         "/static/%2e%2e%2fserver.py", "/static/app.js%00.png", "//etc/passwd", "/api/zones/../../etc/passwd",
         "/api/zones/0", "/api/zones/..%2f0", "/api/state/../../etc", "/api/camera/../../0", "/static/",
         "/static/.", "/static/%C3%A9", "/" + "a" * 5000, "/ws"]


def test_a_few_hundred_random_requests_get_4xx_and_the_page_keeps_serving(page):
    live, path, applied = page
    origin = f"http://127.0.0.1:{live.port}"
    auth = {"Authorization": "Bearer " + KEY}
    post = {**auth, "Origin": origin, "Content-Type": "application/json"}
    rng = random.Random(SEED)
    answers = {}
    for i in range(REQUESTS):
        kind = rng.randrange(9)
        if kind == 0:     # bad JSON, invalid UTF-8, deep nesting
            body = rng.choice([b"{", b"not json", b"\xff\xfe\x00", b"[" * 30000 + b"]" * 30000, b"", b"nul",
                               b'{"camera": "0", "zones": [NaN]}', b'{"camera": "0"'])
            status, _ = request(live, "POST", "/api/zones", body, post)
        elif kind == 1:   # wrong types, path tricks in camera ids, invalid zones
            status, _ = request(live, "POST", "/api/zones", json.dumps(bad_zones_body(rng)).encode(), post)
        elif kind == 2:   # too big (the server may answer and close before it is all sent: a raw socket)
            size = MAX_ZONES_BODY + rng.randint(1, 10**6)
            head = (f"POST /api/zones HTTP/1.1\r\nHost: 127.0.0.1:{live.port}\r\nOrigin: {origin}\r\n"
                    f"Authorization: Bearer {KEY}\r\nContent-Type: application/json\r\n"
                    f"Content-Length: {size}\r\nConnection: close\r\n\r\n")
            # valid zones, padded: refused for its size alone
            body = json.dumps({"camera": "0", "zones": GOOD["0"]}).encode()
            status = raw(live, head.encode() + body + b" " * (size - len(body)))
        elif kind == 3:   # a body longer than it says, or with no length at all (chunked)
            body = json.dumps({"camera": "0", "zones": GOOD["0"]}).encode()
            if rng.random() < 0.5:
                head = (f"POST /api/zones HTTP/1.1\r\nHost: 127.0.0.1:{live.port}\r\nOrigin: {origin}\r\n"
                        f"Authorization: Bearer {KEY}\r\nContent-Type: application/json\r\n"
                        f"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n")
                chunk = b" " * (MAX_ZONES_BODY + 10)
                status = raw(live, head.encode() + b"%x\r\n" % len(chunk) + chunk + b"\r\n0\r\n\r\n")
            else:
                head = (f"POST /api/zones HTTP/1.1\r\nHost: 127.0.0.1:{live.port}\r\nOrigin: {origin}\r\n"
                        f"Authorization: Bearer {KEY}\r\nContent-Type: application/json\r\n"
                        f"Content-Length: {rng.choice(['-1', 'abc', '1e9', str(MAX_ZONES_BODY * 4)])}\r\n"
                        f"Connection: close\r\n\r\n")
                status = raw(live, head.encode() + body)
        elif kind == 4:   # the wrong content type, method, origin or key
            headers = dict(post)
            change = rng.randrange(4)
            if change == 0:
                headers["Content-Type"] = rng.choice(["text/plain", "application/x-www-form-urlencoded", ""])
            elif change == 1:
                headers["Origin"] = rng.choice(["http://evil.example", "null", origin + ".evil.example", ""])
            elif change == 2:
                headers["Authorization"] = rng.choice(["Bearer " + KEY[:-1], "Basic " + KEY, ""])
            else:
                headers["Sec-Fetch-Site"] = rng.choice(["cross-site", "same-site", "none"])
            status, _ = request(live, "POST", "/api/zones", json.dumps({"camera": "0", "zones": GOOD["0"]}).encode(),
                                headers)
        elif kind == 5:   # path tricks in URLs
            status, body = request(live, rng.choice(["GET", "POST", "PUT", "DELETE"]), rng.choice(PATHS),
                                   headers=auth)
            assert b"root:" not in body and b"import" not in body, body[:200]
        elif kind == 6:   # garbage on the wire
            status = raw(live, rng.choice([b"GARBAGE\r\n\r\n", b"GET / HTTP/9.9\r\n\r\n", b"\x16\x03\x01\x00\xff" * 20,
                                           b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\n\r\n",
                                           b"GET / HTTP/1.1\r\nHost: x\r\n" + b"X: " + b"y" * 100000 + b"\r\n\r\n"]))
            if status == 0:   # closed without an answer: refused all the same
                status = 400
        elif kind == 7:   # the page's GETs without a key
            status, _ = request(live, "GET", rng.choice(["/api/state", "/api/zones"]))
        else:             # a login that is too long or not a form
            status, _ = request(live, "POST", "/login", rng.choice([b"key=" + b"k" * 5000, b"\xff" * 10, b"k"]),
                                {"Origin": origin, "Content-Type": "application/x-www-form-urlencoded"})
        answers.setdefault(kind, []).append(status)
        assert 400 <= status < 500, f"request {i} (kind {kind}) got {status}"
        if i % 50 == 49:   # still serving, between the blows
            assert request(live, "GET", "/api/state", headers=auth)[0] == 200
    assert set(answers) == set(range(9)), answers
    # The feed: messages too long, not JSON, or watching cameras that are not there.
    from websockets.sync.client import connect

    for text in ["x" * 5000, "{", json.dumps({"watch": ["../0", "0/../1", None, {"a": 1}, "9" * 100]}),
                 json.dumps({"watch": "0"}), json.dumps([1, 2]), json.dumps({"watch": [0] * 300})]:
        try:
            with connect(f"ws://127.0.0.1:{live.port}/ws", additional_headers=auth, origin=origin,
                         open_timeout=10) as feed:
                assert json.loads(feed.recv(timeout=10))["type"] == "hello"
                feed.send(text)
                feed.recv(timeout=2)   # health (or the close of a message too long)
        except Exception as exc:   # closed by the server: 1009 for the long one
            assert "1009" in str(exc) or "timed out" in str(exc).lower(), exc
    assert set(live.hub.stats()["watched"]) <= {"0", "1"}
    # Nothing malformed was saved nor applied; the file is the valid one it was.
    assert json.loads(path.read_text()) == GOOD and applied == []
    # ... and the page still works: its page, its modules, its state, a valid save.
    assert request(live, "GET", "/", headers=auth)[0] == 200
    assert request(live, "GET", "/static/app.js")[0] == 200
    state = json.loads(request(live, "GET", "/api/state", headers=auth)[1])
    assert [c["id"] for c in state["cameras"]] == [0, 1]
    moved = [{"name": "door", "polygon": [[0.2, 0.2], [0.6, 0.2], [0.6, 0.6]]}]
    status, body = request(live, "POST", "/api/zones", json.dumps({"camera": "0", "zones": moved}).encode(), post)
    assert status == 200, body
    assert json.loads(path.read_text()) == {"0": moved} and len(applied) == 1
