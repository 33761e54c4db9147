"""Remote consoles: the API's answers and errors, one-time expiring tokens, and the noVNC proxy's gate.

The API runs in-process on SQLite with in-process RPC to agents backed by the
real fake driver (whose guests have a small real RFB server); the proxy is the
real websockify-based server on a free port, driven by a real websocket client.
"""
from __future__ import annotations

import asyncio
import socket
import threading
import time
import uuid
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from kilonova.common.db import Database, migrate
from kilonova.common.rpc import InProcessTransport, RPCClient
from kilonova.common.testing import FakeValidator, service_env
from kilonova.compute.api.app import create_app
from kilonova.compute.api.service import API_MIGRATIONS
from kilonova.compute.db import console_tokens, instances, mappings
from kilonova.compute.db.api_models import APIBase
from kilonova.compute.virt.driver import ComputeDriver
from kilonova.compute.virt.fake import FakeDriver
from kilonova.console import urls
from kilonova.console.proxy import ConsoleProxyServer, token_from_cookie, token_from_query
from tests.unit.test_compute_admin_harness import StubComputeAPI

GREETING = b"RFB 003.008\n"


# ---------------------------------------------------------------------- token store

@pytest.fixture
def api_db(tmp_path):
    database = Database(f"sqlite:///{tmp_path}/nova_api.sqlite", name="console-test")
    migrate(database, API_MIGRATIONS, APIBase.metadata)
    yield database
    database.close()


@pytest.fixture(scope="module", params=["sqlite", "postgresql", "mysql"])
def store_db(request, tmp_path_factory):
    """The token store's database on each backend Kilonova runs on (PostgreSQL/MariaDB: throw-away ones)."""
    from tests.distributed.infra import Databases

    servers = None
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('tokens')}/nova_api.sqlite"
    else:
        servers = Databases(request.param)
        url = servers.url("nova_api")
    database = Database(url, name=f"tokens-{request.param}")
    migrate(database, API_MIGRATIONS, APIBase.metadata)
    yield database
    database.close()
    if servers is not None:
        servers.drop_all()


def _record(api_db, *, ttl=600, now=None, instance="inst-1", host="127.0.0.1", port=5900) -> str:
    """A token for ``instance`` (a server that exists: it has an instance mapping)."""
    if api_db.run_sync(mappings.get_instance_mapping, instance, write=False) is None:
        api_db.run_sync(mappings.create_instance_mapping, instance, "p", "u")
    token = console_tokens.new_token()
    api_db.run_sync(console_tokens.create, token, instance_uuid=instance, console_type="novnc", host=host,
                    port=port, ttl=ttl, now=now)
    return token


def test_a_token_opens_its_guest_once(store_db):
    token = _record(store_db, port=5901)
    assert store_db.run_sync(console_tokens.peek, token, write=False).port == 5901  # peeking does not use it
    target = store_db.run_sync(console_tokens.consume, token)
    assert (target.instance_uuid, target.host, target.port) == ("inst-1", "127.0.0.1", 5901)
    assert store_db.run_sync(console_tokens.consume, token) is None
    assert store_db.run_sync(console_tokens.peek, token, write=False) is None


def test_a_token_expires_after_token_ttl(store_db):
    start = time.time()
    token = _record(store_db, ttl=600, now=start)
    assert store_db.run_sync(console_tokens.peek, token, now=start + 599, write=False) is not None
    assert store_db.run_sync(console_tokens.consume, token, now=start + 600) is None
    assert store_db.run_sync(console_tokens.consume, token, now=start + 599) is not None


def test_unknown_tokens_and_only_hashes_are_stored(store_db):
    token = _record(store_db)
    assert store_db.run_sync(console_tokens.consume, token + "x") is None
    assert store_db.run_sync(console_tokens.consume, "") is None
    rows = store_db.run_sync(lambda s: [r[0] for r in s.execute(
        console_tokens.sa.select(console_tokens.ConsoleAuthToken.token_hash))], write=False)
    assert console_tokens.hash_token(token) in rows and token not in rows


def test_concurrent_uses_of_one_token_let_exactly_one_through(store_db):
    token = _record(store_db)
    results: list = []
    barrier = threading.Barrier(8)

    def use():
        barrier.wait()
        results.append(store_db.run_sync(console_tokens.consume, token))

    threads = [threading.Thread(target=use) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(result is not None for result in results) == 1


def test_a_deleted_servers_tokens_open_nothing(store_db):
    token = _record(store_db, instance="doomed")

    def queue_for_delete(session):
        mappings.get_instance_mapping(session, "doomed").queued_for_delete = True

    store_db.run_sync(queue_for_delete)
    assert store_db.run_sync(console_tokens.peek, token, write=False) is None
    assert store_db.run_sync(console_tokens.consume, token) is None


def test_expired_rows_are_dropped_and_deleted_servers_lose_their_tokens(store_db):
    start = time.time()
    _record(store_db, ttl=10, now=start - 100, instance="old")
    kept = _record(store_db, instance="gone")
    _record(store_db, instance="other")
    table = console_tokens.ConsoleAuthToken
    count = store_db.run_sync(lambda s: s.query(table).filter(table.instance_uuid.in_(["old", "gone", "other"]))
                              .count(), write=False)
    assert count == 2  # the expired one went when a new one was recorded
    assert store_db.run_sync(console_tokens.delete_for_instance, "gone") == 1
    assert store_db.run_sync(console_tokens.consume, kept) is None


# ---------------------------------------------------------------------- URLs and token parsing

def test_console_url_carries_the_token_in_novncs_path_parameter(tmp_path):
    conf = service_env(tmp_path).conf
    url = urls.access_url(conf, "abc-DEF_123")
    assert url.startswith("http://127.0.0.1:6080/vnc_lite.html?path=")
    assert parse_qs(urlsplit(url).query)["path"] == ["websockify?token=abc-DEF_123"]
    assert token_from_query(url) == "abc-DEF_123"                      # the page's URL
    assert token_from_query("/websockify?token=abc-DEF_123") == "abc-DEF_123"  # noVNC's websocket
    assert token_from_query("/vnc_lite.html") is None
    conf.set("vnc", "novncproxy_base_url", "https://consoles.example.org/vnc_lite.html?lang=en")
    assert urls.access_url(conf, "t").startswith("https://consoles.example.org/vnc_lite.html?lang=en&path=")


def test_token_cookie_of_older_novnc_clients():
    assert token_from_cookie("lang=en; token=xyz") == "xyz"
    assert token_from_cookie("lang=en") is None
    assert token_from_cookie(None) is None


# ---------------------------------------------------------------------- the proxy

class SyncTokens:
    """The proxy's token store straight on the database (the service hops through its event loop instead)."""

    def __init__(self, database):
        self.database = database

    def peek(self, token):
        return self.database.run_sync(console_tokens.peek, token, write=False)

    def consume(self, token):
        return self.database.run_sync(console_tokens.consume, token)


class Guest:
    """A TCP server that greets like a VNC server and echoes what it gets."""

    def __init__(self):
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._talk, args=(conn,), daemon=True).start()

    @staticmethod
    def _talk(conn):
        with conn:
            conn.sendall(GREETING)
            while data := conn.recv(4096):
                conn.sendall(data)

    def close(self):
        self.sock.close()


@pytest.fixture
def proxy(api_db, tmp_path):
    web = tmp_path / "novnc"
    web.mkdir()
    (web / "vnc_lite.html").write_text("<html>noVNC lite</html>")
    server = ConsoleProxyServer(("127.0.0.1", 0), SyncTokens(api_db), str(web), {"consoles.example.org"})
    threading.Thread(target=server.serve_forever, daemon=True).start()
    guest = Guest()
    yield server, guest
    server.shutdown()
    server.server_close()
    guest.close()


def _ws(server, token, **kwargs):
    return connect(f"ws://127.0.0.1:{server.port}/websockify?token={token}", subprotocols=["binary"],
                   open_timeout=10, **kwargs)


def test_proxy_relays_the_guests_bytes_both_ways_then_refuses_the_used_token(proxy, api_db):
    server, guest = proxy
    token = _record(api_db, port=guest.port)
    with _ws(server, token) as sock:
        assert sock.recv(timeout=10) == GREETING
        sock.send(b"RFB 003.008\n")
        assert sock.recv(timeout=10) == b"RFB 003.008\n"
    with pytest.raises(InvalidStatus) as refused:
        _ws(server, token)
    assert refused.value.response.status_code == 403
    assert guest.connections == 1


@pytest.mark.parametrize("token", ["", "not-a-token", "x" * 300])
def test_proxy_refuses_unknown_tokens_before_the_handshake(proxy, token):
    server, guest = proxy
    with pytest.raises(InvalidStatus) as refused:
        _ws(server, token)
    assert refused.value.response.status_code == 403
    assert guest.connections == 0


def test_proxy_refuses_an_expired_token(proxy, api_db):
    server, guest = proxy
    token = _record(api_db, ttl=1, port=guest.port, now=time.time() - 5)
    with pytest.raises(InvalidStatus) as refused:
        _ws(server, token)
    assert refused.value.response.status_code == 403 and guest.connections == 0


def test_proxy_refuses_pages_of_other_sites_and_keeps_the_token(proxy, api_db):
    server, guest = proxy
    token = _record(api_db, port=guest.port)
    with pytest.raises(InvalidStatus) as refused:
        _ws(server, token, origin="http://evil.example.com")
    assert refused.value.response.status_code == 403
    with _ws(server, token, origin="http://consoles.example.org") as sock:  # the base URL's host is fine
        assert sock.recv(timeout=10) == GREETING


def test_plain_gets_serve_novnc_only_with_a_usable_token(proxy, api_db):
    server, guest = proxy
    token = _record(api_db, port=guest.port)
    with httpx.Client(base_url=f"http://127.0.0.1:{server.port}") as http:
        page = http.get("/vnc_lite.html", params={"path": f"websockify?token={token}"})
        assert page.status_code == 200 and "noVNC lite" in page.text
        bad = http.get("/vnc_lite.html", params={"path": "websockify?token=nope"})
        assert bad.status_code == 403 and "invalid, expired or already used" in bad.text
        assert http.get("/websockify", params={"token": token}).status_code == 400
        assert http.get("/websockify").status_code == 403
        assert http.get("/").status_code == 404  # no directory listings
        with _ws(server, token) as sock:  # loading the page did not use the token
            assert sock.recv(timeout=10) == GREETING
        assert http.get("/vnc_lite.html", params={"path": f"websockify?token={token}"}).status_code == 403


def test_proxy_closes_the_websocket_when_the_guest_is_gone(proxy, api_db):
    server, guest = proxy
    with socket.create_server(("127.0.0.1", 0)) as probe:
        dead_port = probe.getsockname()[1]
    token = _record(api_db, port=dead_port)
    with _ws(server, token) as sock:
        with pytest.raises(Exception):
            sock.recv(timeout=10)
        assert sock.close_code == 1011


# ---------------------------------------------------------------------- the compute API

class Agent:
    """The compute agent's console call, on a real driver."""

    def __init__(self, driver):
        self.driver = driver

    async def get_vnc_console(self, instance):
        return await self.driver.get_vnc_console(instance)


class NoConsoleDriver(FakeDriver):
    get_vnc_console = ComputeDriver.get_vnc_console  # a driver that has no consoles


class ConsoleCloud(StubComputeAPI):
    def __init__(self, state_dir, overrides=None):
        super().__init__(state_dir, overrides)
        self.transport = InProcessTransport()
        self.rpc = RPCClient(self.transport, "conductor", timeout=10)

    def compute_rpc(self, host):
        return self.rpc.prepare(target=f"compute.{host}")


PROJECT, OTHER = "p-owner", "p-other"


@pytest.fixture(scope="module")
async def api(tmp_path_factory):
    cloud = ConsoleCloud(tmp_path_factory.mktemp("console-api"))
    drivers = {"h1": FakeDriver("h1", cloud.conf), "h2": NoConsoleDriver("h2", cloud.conf)}
    for host, driver in drivers.items():
        await cloud.transport.serve(f"compute.{host}", Agent(driver), concurrency=2)
    validator = FakeValidator({"member": ("alice", PROJECT, ["member", "reader"]),
                               "reader": ("rita", PROJECT, ["reader"]),
                               "stranger": ("sam", OTHER, ["member", "reader"]),
                               "admin": ("root", "p-admin", ["admin", "member", "reader"])})
    app = create_app(validator, cloud)
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://compute")
    cloud.drivers = drivers
    cloud.client = client
    yield cloud
    await client.aclose()
    await cloud.transport.close()
    cloud.close()


async def _server(cloud, *, host="h1", vm_state="active", task_state=None, running=True) -> str:
    server_uuid = str(uuid.uuid4())
    cell = next(c for c in cloud.cells.all() if not c.is_cell0)
    await cloud.api_db.write(mappings.create_instance_mapping, server_uuid, PROJECT, "alice")
    await cloud.api_db.write(mappings.set_instance_cell, server_uuid, cell.uuid)
    await cell.db.write(instances.create, {"uuid": server_uuid, "project_id": PROJECT, "user_id": "alice",
                                           "flavor": {"vcpus": 1, "memory_mb": 64, "root_gb": 1},
                                           "vm_state": vm_state, "task_state": task_state, "host": host})
    if running and host in cloud.drivers:
        await cloud.drivers[host].spawn({"uuid": server_uuid}, {"id": "img"}, [])
    return server_uuid


async def _post(cloud, path, body, *, token="member", version="2.6"):
    headers = {"X-Auth-Token": token, "OpenStack-API-Version": f"compute {version}"}
    return await cloud.client.post("/v2.1" + path, json=body, headers=headers)


VNC = {"remote_console": {"protocol": "vnc", "type": "novnc"}}


async def test_remote_console_url_leads_through_a_token_to_the_guest(api):
    server = await _server(api)
    response = await _post(api, f"/servers/{server}/remote-consoles", VNC, version="2.60")
    assert response.status_code == 200, response.text
    body = response.json()["remote_console"]
    assert (body["protocol"], body["type"]) == ("vnc", "novnc")
    token = token_from_query(body["url"])
    target = await api.api_db.read(console_tokens.peek, token)
    assert target.instance_uuid == server
    greeting = await asyncio.to_thread(_read_greeting, target.host, target.port)
    assert greeting == GREETING  # the fake guest's console is a real RFB server
    again = (await _post(api, f"/servers/{server}/remote-consoles", VNC)).json()["remote_console"]["url"]
    assert token_from_query(again) != token  # each call hands out a new one-time URL


def _read_greeting(host, port):
    with socket.create_connection((host, port), timeout=10) as sock:
        return sock.recv(12)


async def test_legacy_action_before_2_6_and_not_after(api):
    server = await _server(api)
    response = await _post(api, f"/servers/{server}/action", {"os-getVNCConsole": {"type": "novnc"}}, version="2.1")
    assert response.status_code == 200, response.text
    console = response.json()["console"]
    assert console["type"] == "novnc" and "vnc_lite.html?path=websockify" in console["url"]
    gone = await _post(api, f"/servers/{server}/action", {"os-getVNCConsole": {"type": "novnc"}}, version="2.6")
    assert gone.status_code == 404
    early = await _post(api, f"/servers/{server}/remote-consoles", VNC, version="2.5")
    assert early.status_code == 404


@pytest.mark.parametrize("path_kind, body, version, status, fragment", [
    ("rc", {"remote_console": {"protocol": "spice", "type": "spice-html5"}}, "2.6", 400, "Unavailable console type"),
    ("rc", {"remote_console": {"protocol": "serial", "type": "serial"}}, "2.6", 400, "Unavailable console type"),
    ("rc", {"remote_console": {"protocol": "vnc", "type": "xvpvnc"}}, "2.6", 400, "Invalid console type xvpvnc"),
    ("rc", {"remote_console": {"protocol": "vnc", "type": "spice-html5"}}, "2.6", 400, "Invalid console type"),
    ("rc", {"remote_console": {"protocol": "mks", "type": "webmks"}}, "2.6", 400, "Invalid input"),
    ("rc", {"remote_console": {"protocol": "mks", "type": "webmks"}}, "2.8", 400, "Unavailable console type"),
    ("rc", {"remote_console": {"protocol": "vnc"}}, "2.6", 400, "Invalid input"),
    ("rc", {"remote_console": {"protocol": "vnc", "type": "novnc", "x": 1}}, "2.6", 400, "Invalid input"),
    ("rc", {"remote_console": "vnc"}, "2.6", 400, "Invalid input"),
    ("rc", {}, "2.6", 400, "'remote_console' is a required property"),
    ("action", {"os-getVNCConsole": {}}, "2.1", 400, "Invalid input"),
    ("action", {"os-getVNCConsole": {"type": "spice-html5"}}, "2.1", 400, "Invalid input"),
    ("action", {"os-getVNCConsole": {"type": "xvpvnc"}}, "2.1", 400, "Invalid console type"),
])
async def test_bad_requests_are_400_with_an_openstack_error_body(api, path_kind, body, version, status, fragment):
    server = await _server(api)
    path = f"/servers/{server}/remote-consoles" if path_kind == "rc" else f"/servers/{server}/action"
    response = await _post(api, path, body, version=version)
    assert response.status_code == status, response.text
    assert fragment in response.json()["badRequest"]["message"]


async def test_only_active_servers_on_a_host_have_consoles(api):
    stopped = await _server(api, vm_state="stopped", running=False)
    response = await _post(api, f"/servers/{stopped}/remote-consoles", VNC)
    assert response.status_code == 409 and "vm_state stopped" in response.json()["conflictingRequest"]["message"]
    deleting = await _server(api, task_state="deleting")
    response = await _post(api, f"/servers/{deleting}/remote-consoles", VNC)
    assert response.status_code == 409 and "task_state deleting" in response.text
    building = await _server(api, vm_state="building", host=None)
    response = await _post(api, f"/servers/{building}/remote-consoles", VNC)
    assert response.status_code == 409 and "is not ready" in response.text
    unreachable = await _server(api, host="h9")
    response = await _post(api, f"/servers/{unreachable}/remote-consoles", VNC)
    assert response.status_code == 409 and "could not be reached" in response.text
    refused = [stopped, deleting, building, unreachable]
    assert await api.api_db.read(lambda s: s.query(console_tokens.ConsoleAuthToken)
                                 .filter(console_tokens.ConsoleAuthToken.instance_uuid.in_(refused)).count()) == 0


async def test_a_driver_without_consoles_is_501(api):
    server = await _server(api, host="h2")
    response = await _post(api, f"/servers/{server}/remote-consoles", VNC)
    assert response.status_code == 501
    assert response.json()["notImplemented"]["message"] == "The requested functionality is not supported."


async def test_other_projects_servers_are_404_and_readers_403(api):
    server = await _server(api)
    response = await _post(api, f"/servers/{server}/remote-consoles", VNC, token="stranger")
    assert response.status_code == 404 and "itemNotFound" in response.json()
    response = await _post(api, f"/servers/{server}/action", {"os-getVNCConsole": {"type": "novnc"}},
                           token="stranger", version="2.1")
    assert response.status_code == 404
    response = await _post(api, f"/servers/{server}/remote-consoles", VNC, token="reader")
    assert response.status_code == 403 and "forbidden" in response.json()
    response = await _post(api, f"/servers/{uuid.uuid4()}/remote-consoles", VNC)
    assert response.status_code == 404
    assert (await _post(api, f"/servers/{server}/remote-consoles", VNC, token="admin")).status_code == 200


async def test_vnc_disabled_makes_novnc_unavailable(api):
    server = await _server(api)
    api.conf.set("vnc", "enabled", "false")
    try:
        response = await _post(api, f"/servers/{server}/remote-consoles", VNC)
    finally:
        api.conf.set("vnc", "enabled", "true")
    assert response.status_code == 400 and "Unavailable console type novnc" in response.text


# ---------------------------------------------------------------------- the service in an event loop

async def test_service_checks_tokens_through_its_event_loop_and_moves_off_a_taken_port(tmp_path, api_db):
    from kilonova.console.service import NoVNCProxyService

    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        env = service_env(tmp_path, {"api_database": {"connection": api_db.url},
                                     "vnc": {"novncproxy_port": str(port), "novnc_web": str(tmp_path)}})
        env.endpoints.apps["compute"] = object()  # as when the compute API runs in the same process
        service = NoVNCProxyService(env)
        await service.start()
        try:
            moved = env.conf.getint("vnc", "novncproxy_port")
            assert moved != port and moved == service.server.port
            assert urls.base_url(env.conf) == f"http://127.0.0.1:{moved}/vnc_lite.html"
            guest = Guest()
            token = await api_db.write(_create_token, guest.port)
            greeting = await asyncio.to_thread(_ws_greeting, moved, token)
            assert greeting == GREETING
            guest.close()
        finally:
            await service.stop()


def _create_token(session, port):
    mappings.create_instance_mapping(session, "i", "p", "u")
    token = console_tokens.new_token()
    console_tokens.create(session, token, instance_uuid="i", console_type="novnc", host="127.0.0.1", port=port,
                          ttl=60)
    return token


def _ws_greeting(port, token):
    with connect(f"ws://127.0.0.1:{port}/websockify?token={token}", subprotocols=["binary"]) as sock:
        return sock.recv(timeout=10)


async def test_service_without_the_api_in_process_fails_clearly_on_a_taken_port(tmp_path, api_db):
    from kilonova.console.service import NoVNCProxyService

    with socket.create_server(("127.0.0.1", 0)) as taken:
        env = service_env(tmp_path, {"api_database": {"connection": api_db.url},
                                     "vnc": {"novncproxy_port": str(taken.getsockname()[1])}})
        with pytest.raises(SystemExit, match="novncproxy cannot listen"):
            await NoVNCProxyService(env).start()
