"""A VNC server for the fake driver's guests: just enough RFB for a console to connect.

One listener per process serves every fake guest. It speaks RFB 3.8 as QEMU
does up to the server's init message (no authentication, a small black
screen named after the guest's host), then reads and drops what the client
sends. So the console path (API → token → noVNC proxy → guest) can be driven
end to end without a hypervisor.
"""
from __future__ import annotations

import asyncio
import contextlib
import struct

GREETING = b"RFB 003.008\n"
WIDTH, HEIGHT = 640, 480
# 32 bits per pixel, depth 24, little endian, true colour, 8 bits of red/green/blue at 16/8/0.
PIXEL_FORMAT = struct.pack("!BBBBHHHBBB3x", 32, 24, 0, 1, 255, 255, 255, 16, 8, 0)

_servers: dict[asyncio.AbstractEventLoop, asyncio.AbstractServer] = {}


async def address() -> tuple[str, int]:
    """(host, port) of this event loop's fake VNC server, started on first use."""
    loop = asyncio.get_running_loop()
    server = _servers.get(loop)
    if server is None:
        server = _servers[loop] = await asyncio.start_server(_serve, "127.0.0.1", 0)
    return "127.0.0.1", server.sockets[0].getsockname()[1]


async def _serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        writer.write(GREETING)
        await writer.drain()
        await reader.readexactly(12)               # the client's version
        writer.write(b"\x01\x01")                  # one security type: None
        await writer.drain()
        await reader.readexactly(1)                # the client's choice
        writer.write(struct.pack("!I", 0))         # security result: OK
        await writer.drain()
        await reader.readexactly(1)                # ClientInit (shared flag)
        name = b"kilonova fake console"
        writer.write(struct.pack("!HH", WIDTH, HEIGHT) + PIXEL_FORMAT + struct.pack("!I", len(name)) + name)
        await writer.drain()
        while await reader.read(4096):
            pass
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()
