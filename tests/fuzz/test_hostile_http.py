"""Hostile HTTP over a real socket against a real gateway process.

Malformed and absurd bodies, header injection, path tricks, oversized bodies and headers,
slow-loris clients, and many of them at once. Each answer is a clear 4xx in the provider's own
error format (OpenAI's on the OpenAI routes, Anthropic's on ``/v1/messages``), never a 5xx; the
process stays up and keeps serving others; the customer's balance does not move; and the
process's memory stays bounded. Requests the HTTP client would tidy up (dot segments, CR/LF in
a header) go over a raw socket.
"""

from __future__ import annotations

import json
import select
import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from urllib.parse import urlsplit

import httpx
import orjson
import pytest

from tests.fuzz.conftest import BODY_BYTES_MAX, BODY_TIMEOUT_S, HEADER_BYTES_MAX, FuzzGateway

MODEL = "gpt-4o-mini"
CLAUDE = "claude-3-5-haiku-latest"
CHAT = "/v1/chat/completions"
MESSAGES = "/v1/messages"
MARKER = "ciyuan-fuzz-marker"

HOSTILE_BODIES: dict[str, bytes] = {
    "invalid utf-8": b'{"model": "gpt-4o-mini", "messages": [{"content": "\xff\xfe"}]}',
    "lone surrogate": b'{"model": "gpt-4o-mini\xed\xa0\x80", "messages": []}',
    "nested 100k arrays": b'{"model": "gpt-4o-mini", "messages": '
    + b"[" * 100_000
    + b"]" * 100_000
    + b"}",
    "nested 100k objects": b'{"model": "gpt-4o-mini", "messages": [], "x": '
    + b'{"a":' * 100_000
    + b"1"
    + b"}" * 100_000
    + b"}",
    "1e400": b'{"model": "gpt-4o-mini", "messages": [], "max_tokens": 1e400}',
    "5000 digits": b'{"model": "gpt-4o-mini", "messages": [], "max_tokens": ' + b"9" * 5000 + b"}",
    "max_tokens 2**70": b'{"model": "gpt-4o-mini", "messages": [], "max_tokens": %d}' % 2**70,
    "max_tokens -1": b'{"model": "gpt-4o-mini", "messages": [], "max_tokens": -1}',
    "NaN": b'{"model": "gpt-4o-mini", "messages": [], "max_tokens": NaN}',
    "Infinity": b'{"model": "gpt-4o-mini", "messages": [], "temperature": Infinity}',
    # The last of duplicate keys wins, as in Python's and the providers' parsers: here that is
    # an invalid limit, so the gateway must refuse, not reserve for the first.
    "duplicate keys": b'{"model": "gpt-4o-mini", "messages": [], "max_tokens": 5, "max_tokens": 0}',
    "not an object": b'["model", "gpt-4o-mini"]',
    "empty": b"",
    "truncated": b'{"model": "gpt-4o-mini", "messages": [',
    "n 2**70": b'{"model": "gpt-4o-mini", "messages": [], "n": %d}' % 2**70,
    "model 10k chars": orjson.dumps({"model": "m" * 10_000, "messages": []}),
    "model not a string": b'{"model": {"$gt": ""}, "messages": []}',
}


def _as_anthropic(body: bytes) -> bytes:
    return body.replace(b"gpt-4o-mini", CLAUDE.encode())


def assert_openai_error(response: httpx.Response, status: int | None = None) -> None:
    assert 400 <= response.status_code < 500, (response.status_code, response.text[:500])
    if status is not None:
        assert response.status_code == status, response.text[:500]
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert isinstance(error["message"], str) and error["message"]
    assert isinstance(error["type"], str) and "code" in error and "param" in error


def assert_anthropic_error(response: httpx.Response, status: int | None = None) -> None:
    assert 400 <= response.status_code < 500, (response.status_code, response.text[:500])
    if status is not None:
        assert response.status_code == status, response.text[:500]
    body = response.json()
    assert body["type"] == "error"
    assert isinstance(body["error"]["type"], str) and body["error"]["message"]


@pytest.fixture
def unchanged(fuzz_gateway: FuzzGateway) -> Iterator[None]:
    """The customer's balance is the same after the test as before, and the process is up."""
    before = fuzz_gateway.available()
    yield
    assert fuzz_gateway.alive()
    assert fuzz_gateway.available() == before


@pytest.mark.parametrize("name", list(HOSTILE_BODIES))
def test_hostile_bodies_get_a_4xx_in_each_providers_format(
    name: str, client: httpx.Client, unchanged: None
) -> None:
    body = HOSTILE_BODIES[name]
    assert_openai_error(
        client.post(CHAT, content=body, headers={"content-type": "application/json"})
    )
    anthropic = client.post(
        MESSAGES,
        content=_as_anthropic(body),
        headers={"content-type": "application/json", "anthropic-version": "2023-06-01"},
    )
    assert_anthropic_error(anthropic)


# ---- raw sockets ---------------------------------------------------------------------------


def _address(gateway: FuzzGateway) -> tuple[str, int]:
    parts = urlsplit(gateway.base_url)
    assert parts.hostname is not None and parts.port is not None
    return parts.hostname, parts.port


@contextmanager
def connection(gateway: FuzzGateway, timeout_s: float = 30.0) -> Iterator[socket.socket]:
    sock = socket.create_connection(_address(gateway), timeout=timeout_s)
    try:
        yield sock
    finally:
        sock.close()


def read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 response, read until the body is complete (or the peer closes)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "-1"))
    while length < 0 or len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return status, headers, body


def raw_request(gateway: FuzzGateway, request: bytes) -> tuple[int, dict[str, str], bytes]:
    with connection(gateway) as sock:
        sock.sendall(request)
        return read_response(sock)


def closed_by_peer(sock: socket.socket, within_s: float) -> bool:
    """Whether the gateway closes the connection (EOF or reset) within ``within_s``, reading
    and discarding whatever it answers first."""
    deadline = time.monotonic() + within_s
    while (remaining := deadline - time.monotonic()) > 0:
        readable, _, _ = select.select([sock], [], [], remaining)
        if not readable:
            continue
        try:
            if not sock.recv(65536):
                return True
        except ConnectionResetError:
            return True
    return False


def test_header_injection_is_not_reflected(fuzz_gateway: FuzzGateway, unchanged: None) -> None:
    key = fuzz_gateway.key
    attempts = [
        # A bare LF and CR/LF inside a header value: the request is refused or the "injected"
        # line is just another request header, which the gateway never echoes.
        f"GET /v1/models HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n"
        f"X-Request-Id: a\nSet-Cookie: {MARKER}=1\r\nConnection: close\r\n\r\n",
        f"GET /v1/models HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n"
        f"X-Forwarded-For: 1\r\nSet-Cookie: {MARKER}=1\r\nConnection: close\r\n\r\n",
        f"GET /v1/models HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n"
        f"X-A: a\rSet-Cookie: {MARKER}=1\r\nConnection: close\r\n\r\n",
        # Encoded CR/LF in the path lands in a 404's JSON body, never in a header.
        f"GET /v1/models%0d%0aSet-Cookie:%20{MARKER}=1 HTTP/1.1\r\nHost: x\r\n"
        f"Authorization: Bearer {key}\r\nConnection: close\r\n\r\n",
        f"POST {CHAT} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n"
        f"Idempotency-Key: {MARKER}\r\nX-Ciyuan-Cost: {MARKER}\r\n"
        f"Content-Length: 2\r\nConnection: close\r\n\r\n{{}}",
    ]
    for attempt in attempts:
        status, headers, _ = raw_request(fuzz_gateway, attempt.encode())
        assert status < 500
        assert "set-cookie" not in headers
        assert all(MARKER not in value for value in headers.values()), headers


PATH_TRICKS = [
    "/v1/../admin/accounts",
    "/v1/%2e%2e/admin/accounts",
    "/v1/%2E%2E/%2E%2E/admin/accounts",
    "/v1/..%2fadmin%2faccounts",
    "/admin/%2e%2e/admin/accounts",
    "//admin//accounts",
    "/admin/accounts/../../v1/models",
    "/ADMIN/accounts",
    "/admin%2faccounts",
    "/v1%2fchat%2fcompletions",
]


@pytest.mark.parametrize("path", PATH_TRICKS)
def test_path_tricks_never_reach_the_admin_api_with_a_client_key(
    path: str, fuzz_gateway: FuzzGateway, unchanged: None
) -> None:
    request = (
        f"GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {fuzz_gateway.key}\r\n"
        "Connection: close\r\n\r\n"
    )
    status, _, body = raw_request(fuzz_gateway, request.encode())
    assert 400 <= status < 500, (status, body[:300])
    assert b"acc_" not in body  # no account listing leaked


@pytest.mark.parametrize(
    "path", ["//v1//chat/completions", "/v1/chat/completions/", "/v1//messages"]
)
def test_odd_metered_paths_charge_nothing(
    path: str, client: httpx.Client, fuzz_gateway: FuzzGateway, unchanged: None
) -> None:
    body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}
    request = client.build_request("POST", "http://x", json=body)
    sock_request = (
        f"POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: {client.headers['authorization']}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(request.content)}\r\n"
        "Connection: close\r\n\r\n"
    ).encode() + request.content
    status, _, raw = raw_request(fuzz_gateway, sock_request)
    assert 400 <= status < 500, (status, raw[:300])
    error = json.loads(raw)
    assert "error" in error, error


def test_very_long_paths_are_refused(client: httpx.Client, unchanged: None) -> None:
    assert_openai_error(client.get("/v1/" + "a" * 8000))
    # Longer than every header together may be: refused as such, not routed.
    response = client.get("/v1/models?" + "q=" * HEADER_BYTES_MAX)
    assert response.status_code in (414, 431), response.status_code
    assert_openai_error_body(response)


def assert_openai_error_body(response: httpx.Response) -> None:
    assert response.json()["error"]["message"]


def test_oversized_bodies_are_refused_with_413(
    client: httpx.Client, fuzz_gateway: FuzzGateway, unchanged: None
) -> None:
    big = b'{"model": "gpt-4o-mini", "messages": [], "x": "' + b"a" * BODY_BYTES_MAX + b'"}'
    # With a Content-Length: refused before the body is read.
    assert_openai_error(client.post(CHAT, content=big), 413)
    assert_anthropic_error(
        client.post(MESSAGES, content=_as_anthropic(big), headers={"anthropic-version": "x"}),
        413,
    )

    # Chunked, without a Content-Length: refused once the limit is passed.
    def chunks() -> Iterator[bytes]:
        for start in range(0, len(big), 32 * 1024):
            yield big[start : start + 32 * 1024]

    assert_openai_error(client.post(CHAT, content=chunks()), 413)
    # Chunked over a raw socket, sent as fast as possible: the read is capped and answered.
    lying = (
        f"POST {CHAT} HTTP/1.1\r\nHost: x\r\nAuthorization: {client.headers['authorization']}\r\n"
        "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    ).encode()
    with connection(fuzz_gateway) as sock:
        sock.sendall(lying)
        for start in range(0, len(big), 64 * 1024):
            piece = big[start : start + 64 * 1024]
            try:
                sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
            except (BrokenPipeError, ConnectionResetError):
                break  # refused and closed before all of it was sent: that is fine
        status, _, body = read_response(sock)
    assert status == 413, body[:300]


def test_oversized_headers_are_refused(client: httpx.Client, unchanged: None) -> None:
    huge = {"x-padding": "p" * (HEADER_BYTES_MAX + 1)}
    response = client.get("/v1/models", headers=huge)
    assert response.status_code == 431
    assert_openai_error_body(response)
    response = client.post(MESSAGES, json={}, headers=huge)
    assert response.status_code == 431
    assert response.json()["type"] == "error"
    many = {f"x-h{i}": "v" * 100 for i in range(HEADER_BYTES_MAX // 100)}
    assert client.get("/v1/models", headers=many).status_code == 431


def test_a_gigantic_header_is_cut_off_without_being_buffered(
    fuzz_gateway: FuzzGateway, unchanged: None
) -> None:
    """8 MiB of one header: the gateway stops reading it (431 or a closed connection) instead
    of holding it all in memory until the request head ends."""
    rss_before = rss_kib(fuzz_gateway.pid)
    with connection(fuzz_gateway) as sock:
        sock.sendall(b"GET /v1/models HTTP/1.1\r\nHost: x\r\nX-Big: ")
        sent = 0
        try:
            for _ in range(128):
                sock.sendall(b"a" * 65536)
                sent += 65536
        except (BrokenPipeError, ConnectionResetError):
            pass
        assert sent < 128 * 65536 or closed_by_peer(sock, 10)
    assert rss_kib(fuzz_gateway.pid) - rss_before < 64 * 1024


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_slow_loris_headers_are_cut_off_and_others_still_served(
    fuzz_gateway: FuzzGateway, client: httpx.Client, unchanged: None
) -> None:
    head = f"GET /v1/models HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {fuzz_gateway.key}\r\n"
    with connection(fuzz_gateway) as sock:
        # One byte at a time, each well inside any idle timeout, never finishing the head.
        closed = False
        deadline = time.monotonic() + BODY_TIMEOUT_S * 5
        endless = head.encode() + b"".join(b"X-Slow-%d: y\r\n" % i for i in range(1000))
        for byte in endless:
            try:
                sock.send(bytes([byte]))
            except (BrokenPipeError, ConnectionResetError):
                closed = True
                break
            if closed_by_peer(sock, 0.05):
                closed = True
                break
            if time.monotonic() > deadline:
                break
        assert closed, "the slow head was never cut off"
    assert client.get("/v1/models").status_code == 200


def test_a_body_that_never_finishes_is_cut_off(
    fuzz_gateway: FuzzGateway, client: httpx.Client, unchanged: None
) -> None:
    request = (
        f"POST {CHAT} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {fuzz_gateway.key}\r\n"
        "Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
        '{"model": "gpt-4o-mini", '
    ).encode()
    with connection(fuzz_gateway) as sock:
        sock.sendall(request)
        status, _, body = read_response(sock)
        assert status == 400 and b"did not arrive" in body, body
        assert closed_by_peer(sock, BODY_TIMEOUT_S * 5)
    # A GET that announces a body it never sends: answered, then the connection is closed.
    with connection(fuzz_gateway) as sock:
        sock.sendall(
            f"GET /v1/models HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {fuzz_gateway.key}\r\n"
            "Content-Length: 1000\r\n\r\nabc".encode()
        )
        status, _, _ = read_response(sock)
        assert status == 200
        assert closed_by_peer(sock, BODY_TIMEOUT_S * 5)
    assert client.get("/v1/models").status_code == 200


def test_many_hostile_clients_at_once_and_memory_stays_bounded(
    fuzz_gateway: FuzzGateway, client: httpx.Client
) -> None:
    nested = HOSTILE_BODIES["nested 100k arrays"]
    big = b'{"model": "gpt-4o-mini", "x": "' + b"a" * (BODY_BYTES_MAX + 1) + b'"}'
    # Warm up once so one-time allocations (import caches, pools) are not counted as growth.
    client.post(CHAT, content=nested)
    client.post(CHAT, content=big)
    rss_before = rss_kib(fuzz_gateway.pid)
    balance_before = fuzz_gateway.available()

    def hostile(i: int) -> int:
        # httpx.Client is thread-safe: one pool for all 8 threads.
        return client.post(CHAT, content=nested if i % 2 else big).status_code

    # Slow clients holding connections open while the others hammer the gateway.
    slow = [socket.create_connection(_address(fuzz_gateway)) for _ in range(20)]
    try:
        for sock in slow:
            sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n")
        with ThreadPoolExecutor(8) as pool:
            statuses = list(pool.map(hostile, range(100)))
        assert set(statuses) <= {400, 413}, statuses
        assert fuzz_gateway.available() == balance_before
        # Still serving (and charging) a well-formed request while the slow ones hang on.
        ok = client.post(
            CHAT, json={"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}
        )
        assert ok.status_code == 200
    finally:
        for sock in slow:
            sock.close()
    grown_kib = rss_kib(fuzz_gateway.pid) - rss_before
    # 100 bodies of 256 KiB to 600 KiB passed through: growth must not scale with them.
    assert grown_kib < 48 * 1024, f"RSS grew by {grown_kib} KiB"


def test_unknown_routes_and_methods_answer_in_the_providers_format(
    client: httpx.Client, unchanged: None
) -> None:
    # Starlette's own 404/405 were plain text, which the SDKs cannot parse into their errors.
    assert_openai_error(client.get("/v1/no-such-route"), 404)
    assert_openai_error(client.post("/v1/chat/completions/", json={}), 404)
    wrong_method = client.get(CHAT)
    assert_openai_error(wrong_method, 405)
    assert "POST" in wrong_method.headers["allow"]
    assert_anthropic_error(client.get(MESSAGES), 405)
