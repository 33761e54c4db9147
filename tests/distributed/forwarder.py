"""A TCP forwarder owned by a test: a listening address that relays to a real server.

Used to put a service the machine runs (PostgreSQL, RabbitMQ, a Kilonova API) behind an address
the test controls: stopping the forwarder cuts every relayed connection and makes new ones
refused, which is what a client sees when the server (or the network to it) goes away; and a
forwarder bound to a bridge address lets processes in other network namespaces reach a
server that listens on 127.0.0.1 only.
"""
from __future__ import annotations

import contextlib
import socket
import threading


class Forwarder:
    def __init__(self, target: tuple[str, int], listen: tuple[str, int] = ("127.0.0.1", 0)):
        self.target = target
        self._listener = socket.create_server(listen, reuse_port=False)
        self.address: tuple[str, int] = self._listener.getsockname()[:2]
        self._sockets: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._blackhole = threading.Event()  # set: what clients send is dropped, as by a dead network
        self._thread = threading.Thread(target=self._accept, name=f"fwd-{self.address[1]}", daemon=True)
        self._thread.start()

    @property
    def port(self) -> int:
        return self.address[1]

    def _accept(self) -> None:
        self._listener.settimeout(0.2)  # so that stop() is noticed without a connection arriving
        while not self._stopped.is_set():
            try:
                client, _ = self._listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            client.settimeout(None)
            try:
                upstream = socket.create_connection(self.target, timeout=5)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            with self._lock:
                if self._stopped.is_set():
                    client.close()
                    upstream.close()
                    return
                self._sockets.update((client, upstream))
            for src, dst, outbound in ((client, upstream, True), (upstream, client, False)):
                threading.Thread(target=self._pump, args=(src, dst, outbound), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, outbound: bool = False) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if outbound and self._blackhole.is_set():
                    continue
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                with contextlib.suppress(OSError):
                    sock.close()
            with self._lock:
                self._sockets.discard(src)
                self._sockets.discard(dst)

    def blackhole(self) -> None:
        """From now on, drop what the clients send (the server's answers still arrive) until ``cut``."""
        self._blackhole.set()

    def cut(self) -> None:
        """Cut the open connections (new ones are relayed again, nothing dropped)."""
        with self._lock:
            sockets, self._sockets = list(self._sockets), set()
        self._blackhole.clear()
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                sock.close()

    def stop(self) -> None:
        """Refuse new connections and cut the open ones."""
        self._stopped.set()
        self._thread.join(timeout=5)
        with contextlib.suppress(OSError):
            self._listener.close()
        with self._lock:
            sockets, self._sockets = list(self._sockets), set()
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                sock.close()

    def __enter__(self) -> "Forwarder":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
