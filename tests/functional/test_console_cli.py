"""Consoles through the real `openstack` and `nova` CLIs against `kilonova up`, and the noVNC proxy it serves.

The fake driver's guests have a small real RFB server, so the whole path runs:
CLI → compute API → token → proxy page → websocket → guest. The cloud of this
module has short-lived tokens to show expiry.
"""
from __future__ import annotations

import subprocess
import sys
import threading
import time
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from tests.cloud import CONSOLE_TOKEN_TTL

GREETING = b"RFB 003.008\n"


@pytest.fixture(scope="module")
def console_cloud(cloud):
    """The shared cloud: its proxy on a free port (the compute API in the same process builds URLs with the one
    chosen), console tokens valid CONSOLE_TOKEN_TTL seconds."""
    return cloud


@pytest.fixture(scope="module")
def vm(console_cloud):
    created = console_cloud.openstack("server", "create", "--flavor", "m1.tiny", "--image", "kilonova-tiny",
                                      "--network", "private", "--wait", "vm-console", fmt_json=True)
    yield created
    console_cloud.openstack("server", "delete", "--wait", created["id"], check=False)


def websocket_url(console_url: str) -> str:
    """Where noVNC's page connects: the page's host and its ``path`` parameter."""
    parts = urlsplit(console_url)
    return f"ws://{parts.netloc}/{parse_qs(parts.query)['path'][0]}"


def rfb_greeting(console_url: str) -> bytes:
    with connect(websocket_url(console_url), subprotocols=["binary"], open_timeout=15) as sock:
        return sock.recv(timeout=15)


def refused_status(console_url: str) -> int:
    with pytest.raises(InvalidStatus) as refused:
        connect(websocket_url(console_url), subprotocols=["binary"], open_timeout=15)
    return refused.value.response.status_code


def test_openstack_console_url_show_novnc_opens_the_guests_console_once(console_cloud, vm):
    shown = console_cloud.openstack("console", "url", "show", "--novnc", vm["id"], fmt_json=True)
    assert shown["protocol"] == "vnc" and shown["type"] == "novnc"
    url = shown["url"]
    assert "/vnc_lite.html?path=websockify%3Ftoken%3D" in url
    assert f"consoles   {url.split('?')[0]}" in "".join(console_cloud.output)  # the URL `kilonova up` announced

    page = httpx.get(url, timeout=15)
    assert page.status_code == 200 and "noVNC" in page.text  # Debian's novnc, installed by bootstrap.sh
    assert rfb_greeting(url) == GREETING
    assert refused_status(url) == 403                       # one connection per URL
    assert httpx.get(url, timeout=15).status_code == 403    # and the page says so too


def test_each_call_gives_a_new_url_and_nova_cli_works_too(console_cloud, vm):
    first = console_cloud.openstack("console", "url", "show", vm["name"], fmt_json=True)["url"]
    result = console_cloud.nova("get-vnc-console", vm["id"], "novnc")
    second = next(word for word in result.stdout.split() if word.startswith("http://"))
    assert rfb_greeting(second) == GREETING
    assert first != second


def test_console_url_expires_after_token_ttl(console_cloud, vm):
    url = console_cloud.openstack("console", "url", "show", "--novnc", vm["id"], fmt_json=True)["url"]
    time.sleep(CONSOLE_TOKEN_TTL + 1)
    assert refused_status(url) == 403
    assert httpx.get(url, timeout=15).status_code == 403


def test_legacy_action_at_2_1_and_the_errors_users_get(console_cloud, vm):
    with console_cloud.http("compute") as http:
        legacy = http.post(f"/servers/{vm['id']}/action", json={"os-getVNCConsole": {"type": "novnc"}})
        assert legacy.status_code == 200
        assert rfb_greeting(legacy.json()["console"]["url"]) == GREETING
        newer = {"OpenStack-API-Version": "compute 2.6"}
        bad = http.post(f"/servers/{vm['id']}/remote-consoles", headers=newer,
                        json={"remote_console": {"protocol": "spice", "type": "spice-html5"}})
        assert bad.status_code == 400 and bad.json()["badRequest"]["message"] == \
            "Unavailable console type spice-html5."
    spice = console_cloud.openstack("console", "url", "show", "--spice", vm["id"], check=False)
    assert spice.returncode != 0 and "Unavailable console type spice-html5" in spice.stderr
    # The demo project does not see the admin project's server.
    other = console_cloud.openstack("console", "url", "show", vm["id"], cloud="kilonova-demo", check=False)
    assert other.returncode != 0 and "No Server found" in other.stderr + other.stdout


def test_a_stopped_server_has_no_console(console_cloud):
    created = console_cloud.openstack("server", "create", "--flavor", "m1.tiny", "--image", "kilonova-tiny",
                                      "--network", "private", "--wait", "vm-stopped", fmt_json=True)
    console_cloud.openstack("server", "stop", created["id"])
    deadline = time.monotonic() + 60
    with console_cloud.http("compute") as http:
        while http.get(f"/servers/{created['id']}").json()["server"]["status"] != "SHUTOFF":
            assert time.monotonic() < deadline, "server did not stop"
            time.sleep(0.3)
    result = console_cloud.openstack("console", "url", "show", "--novnc", created["id"], check=False)
    assert result.returncode != 0
    assert "vm_state stopped" in result.stderr and "409" in result.stderr
    console_cloud.openstack("server", "delete", "--wait", created["id"])


def test_kilonova_serve_novncproxy_alone_shares_the_tokens(console_cloud, vm):
    """A proxy in its own process (as in a split deployment) checks the tokens the API recorded."""
    proc = subprocess.Popen([sys.executable, "-m", "kilonova.cli", "--config", str(console_cloud.config_file),
                             "--state-dir", str(console_cloud.state_dir), "serve", "novncproxy"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    watchdog = threading.Timer(120, proc.kill)  # a proxy that never gets ready must not hang the suite
    watchdog.start()
    try:
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if line.split()[:1] == ["consoles"]:
                break
        assert lines and lines[-1].split()[:1] == ["consoles"], "".join(lines)
        standalone = urlsplit(lines[-1].split()[1]).netloc
        url = console_cloud.openstack("console", "url", "show", "--novnc", vm["id"], fmt_json=True)["url"]
        through_standalone = urlsplit(url)._replace(netloc=standalone).geturl()
        assert rfb_greeting(through_standalone) == GREETING
        assert refused_status(url) == 403  # used up, whichever proxy it went through
    finally:
        watchdog.cancel()
        proc.terminate()
        proc.wait(20)
