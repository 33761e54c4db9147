"""The noVNC console of a real QEMU guest: `openstack console url show --novnc`, then the URL's websocket.

Reuses the cloud (libvirt driver) fixture of ``test_real_guest``. Through the proxy the
test speaks RFB with QEMU's own VNC server up to its init message, whose desktop name is the
libvirt domain's, then shows that the URL's token does not open a second connection.
"""
from __future__ import annotations

import struct
from urllib.parse import parse_qs, urlsplit

import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from tests.libvirt.test_real_guest import cloud, no_qemu_left, upload_guest  # noqa: F401 - fixture


class RFBStream:
    """Exact-size reads over websocket messages (the proxy relays TCP chunks as they come)."""

    def __init__(self, sock):
        self.sock = sock
        self.buffer = b""

    def read(self, size: int) -> bytes:
        while len(self.buffer) < size:
            self.buffer += self.sock.recv(timeout=30)
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data


def websocket_url(console_url: str) -> str:
    parts = urlsplit(console_url)
    return f"ws://{parts.netloc}/{parse_qs(parts.query)['path'][0]}"


def test_novnc_console_reaches_the_real_guests_vnc_server_once(cloud, guest):  # noqa: F811 - fixtures
    os_ = cloud.openstack
    image = upload_guest(cloud, guest, "console-guest")
    os_("flavor", "create", "--ram", "128", "--disk", "1", "--vcpus", "1", "console.tiny")
    server = os_("server", "create", "--flavor", "console.tiny", "--image", image["id"], "--network", "private",
                 "--wait", "console-vm", fmt_json=True, timeout=180)
    uuid = server["id"]
    assert server["status"] == "ACTIVE", server
    try:
        url = os_("console", "url", "show", "--novnc", uuid, fmt_json=True)["url"]
        with connect(websocket_url(url), subprotocols=["binary"], open_timeout=30) as sock:
            rfb = RFBStream(sock)
            assert rfb.read(12) == b"RFB 003.008\n"      # QEMU's greeting, through the proxy
            sock.send(b"RFB 003.008\n")
            count = rfb.read(1)[0]
            assert 1 in rfb.read(count)                  # security type None: VNC listens on the host only
            sock.send(b"\x01")
            assert struct.unpack("!I", rfb.read(4))[0] == 0
            sock.send(b"\x01")                           # ClientInit: share the desktop
            width, height = struct.unpack("!HH", rfb.read(4))
            rfb.read(16)                                 # pixel format
            name = rfb.read(struct.unpack("!I", rfb.read(4))[0]).decode()
            assert width > 0 and height > 0
            assert name == f"QEMU (instance-{uuid})"     # QEMU names the desktop after the domain
        with pytest.raises(InvalidStatus) as refused:
            connect(websocket_url(url), subprotocols=["binary"], open_timeout=30)
        assert refused.value.response.status_code == 403
    finally:
        os_("server", "delete", "--wait", uuid, timeout=120)
    assert no_qemu_left(uuid)
