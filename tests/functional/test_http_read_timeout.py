"""A connection that stops sending its request is closed after ``[wsgi] client_socket_timeout``.

A real uvicorn server with Kilonova's protocol on a free port, driven through raw sockets: silent new
connections, a half-sent head and a half-sent body are closed; a slow application, the keep-alive wait
between requests and a steady client are not cut. The last test starts ``kilonova up`` with the option
set and checks that its APIs use the protocol.
"""
from __future__ import annotations

import asyncio
import socket
import threading
import time

import pytest
import uvicorn

from kilonova.common.http_protocol import ReadTimeoutH11Protocol
from tests.cloud import free_port_block, new_cloud

TIMEOUT = 0.5


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    body = b""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            app.disconnects += 1
            return
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    if scope["path"] == "/slow":
        await asyncio.sleep(TIMEOUT * 3)
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"%d" % len(body))]})
    await send({"type": "http.response.body", "body": body})


app.disconnects = 0


@pytest.fixture(scope="module")
def server():
    port = free_port_block()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, http=ReadTimeoutH11Protocol, lifespan="off",
                            log_level="warning", timeout_keep_alive=30)
    config.client_socket_timeout = TIMEOUT
    instance = uvicorn.Server(config)
    thread = threading.Thread(target=instance.run, daemon=True)
    thread.start()
    while not instance.started:
        time.sleep(0.01)
    yield port
    instance.should_exit = True
    thread.join(5)


def _connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT * 8)
    return sock


def _closed_within(sock: socket.socket, seconds: float) -> bool:
    """Whether the server closes ``sock`` (EOF) within ``seconds``."""
    sock.settimeout(seconds)
    try:
        return sock.recv(1024) == b""
    except socket.timeout:
        return False
    except ConnectionResetError:
        return True


def _response(sock: socket.socket) -> bytes:
    """One whole response: its head, then as many body bytes as its content-length says (the server may send
    them in a packet of their own)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")[1:]
                   if line.lower().startswith(b"content-length:")), 0)
    while len(body) < length:
        chunk = sock.recv(4096)
        if not chunk:
            break
        body += chunk
    return head + b"\r\n\r\n" + body


def test_a_silent_new_connection_is_closed(server):
    sock = _connect(server)
    started = time.monotonic()
    assert _closed_within(sock, TIMEOUT * 6)
    assert TIMEOUT * 0.8 <= time.monotonic() - started < TIMEOUT * 6


def test_a_half_sent_head_is_closed(server):
    sock = _connect(server)
    sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
    assert _closed_within(sock, TIMEOUT * 6)


def test_a_half_sent_body_is_closed_and_the_application_told(server):
    before = app.disconnects
    sock = _connect(server)
    sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nonly part")
    assert _closed_within(sock, TIMEOUT * 6)
    deadline = time.monotonic() + 2
    while app.disconnects == before and time.monotonic() < deadline:
        time.sleep(0.02)
    assert app.disconnects == before + 1


def test_a_steady_client_a_slow_application_and_keep_alive_are_not_cut(server):
    sock = _connect(server)
    # The head arrives in pieces, each within the timeout, and its whole exceeds the timeout: kept.
    for piece in (b"POST /slow HTTP/1.1\r\n", b"Host: x\r\n", b"Content-Length: 2\r\n\r\n", b"ok"):
        sock.sendall(piece)
        time.sleep(TIMEOUT * 0.6)
    # The application takes three timeouts to answer: the request is in, so it is not the client's delay.
    assert _response(sock).startswith(b"HTTP/1.1 200")
    # Idle between requests longer than the read timeout (uvicorn's keep-alive allows 30 s): still usable.
    time.sleep(TIMEOUT * 2)
    sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert _response(sock).startswith(b"HTTP/1.1 200")


def test_the_all_in_one_closes_silent_connections():
    cloud = new_cloud(hosts=1, config={"wsgi": {"client_socket_timeout": "1"}})
    try:
        cloud.start()
        sock = _connect(cloud.base_port + 1)  # the compute API
        assert _closed_within(sock, 6)
        sock = _connect(cloud.base_port + 1)
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert _response(sock).startswith(b"HTTP/1.1 200")
    finally:
        cloud.stop()
