"""The metadata API for guests: http://169.254.169.254/ on each tenant network.

One small server per network runs inside the network's DHCP namespace, where
169.254.169.254 is a local address; a guest's default route (the subnet's gateway)
leads there. It knows a guest by its source address: the network's ``ports.json``
maps each port's addresses to its instance, and each instance directory holds the
same files as its config drive under ``metadata/openstack/<version>/``.

    ip netns exec kilonova-dhcp-<network>-<scope> python -m kilonova.compute.virt.libvirt.metadata \\
        <instances_path> <network_id>

Served: ``/openstack`` (versions), ``/openstack/<version>/{meta_data.json,user_data,
network_data.json,vendor_data.json,vendor_data2.json}`` and the EC2-style basics under
``/latest/meta-data/`` and ``/latest/user-data`` that cloud-init falls back to, ``public-ipv4`` being the
guest's floating IP (read at each request from the instance's ``network_info.json``).
"""
from __future__ import annotations

import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ADDRESS = "169.254.169.254"
FILES = ("meta_data.json", "user_data", "network_data.json", "vendor_data.json", "vendor_data2.json")


class MetadataServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], instances_path: Path, network_id: str):
        super().__init__(address, Handler)
        self.instances_path = instances_path
        self.network_id = network_id

    def instance_for(self, ip: str) -> str | None:
        path = self.instances_path / "_networks" / self.network_id / "ports.json"
        try:
            ports = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        for port in ports.values():
            if ip in port.get("ips", []) and port.get("device_id"):
                return port["device_id"]
        return None


class Handler(BaseHTTPRequestHandler):
    server: MetadataServer
    server_version = "KilonovaMetadata/1.0"

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - the stdlib's name
        pass

    def _send(self, status: int, body: bytes, content_type: str = "text/plain") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
        uuid = self.server.instance_for(self.client_address[0])
        if uuid is None:
            self._send(404, b"No instance has this address on this network.\n")
            return
        root = self.server.instances_path / uuid / "metadata" / "openstack"
        parts = [p for p in self.path.split("?")[0].split("/") if p]
        if not root.exists():
            self._send(404, b"No metadata for this instance.\n")
        elif parts == ["openstack"]:
            versions = sorted(p.name for p in root.iterdir())
            self._send(200, "\n".join(versions).encode())
        elif len(parts) == 2 and parts[0] == "openstack" and (root / parts[1]).is_dir():
            self._send(200, "\n".join(f for f in FILES if (root / parts[1] / f).exists()).encode())
        elif len(parts) == 3 and parts[0] == "openstack" and parts[2] in FILES and \
                (root / parts[1] / parts[2]).is_file():
            kind = "application/json" if parts[2].endswith(".json") else "application/octet-stream"
            self._send(200, (root / parts[1] / parts[2]).read_bytes(), kind)
        elif parts[:1] in (["latest"], ["2009-04-04"]):
            self._ec2(root / "latest", parts[1:])
        elif not parts:
            self._send(200, b"latest\nopenstack")
        else:
            self._send(404, b"Not found.\n")

    def _ec2(self, latest: Path, parts: list[str]) -> None:
        meta = json.loads((latest / "meta_data.json").read_text())
        if parts == ["user-data"]:
            data = latest / "user_data"
            self._send(200, data.read_bytes()) if data.exists() else self._send(404, b"No user data.\n")
            return
        keys = list(meta.get("public_keys", {}).values())
        values = {"instance-id": meta["uuid"], "hostname": meta.get("hostname", ""),
                  "local-hostname": meta.get("hostname", ""), "local-ipv4": self.client_address[0],
                  "public-ipv4": self._floating_ip(latest.parents[2]),
                  "placement/availability-zone": meta.get("availability_zone") or "",
                  "public-keys/0/openssh-key": keys[0] if keys else ""}
        path = "/".join(parts[1:]) if parts[:1] == ["meta-data"] else None
        if path is None:
            self._send(200, b"meta-data\nuser-data")
        elif not path:
            listing = sorted({key.split("/")[0] + ("/" if "/" in key else "") for key in values})
            self._send(200, "\n".join(listing).encode())
        elif path in values:
            self._send(200, str(values[path]).encode())
        else:
            self._send(404, b"Not found.\n")


    def _floating_ip(self, instance_dir: Path) -> str:
        """The floating IP of the asking address, from the instance's network information (which its host
        rewrites when a floating IP is associated or taken off): EC2's ``public-ipv4``, empty without one."""
        try:
            network_info = json.loads((instance_dir / "network_info.json").read_text())
        except (OSError, ValueError):
            return ""
        for vif in network_info:
            for ip in vif.get("fixed_ips") or []:
                if ip.get("ip_address") == self.client_address[0] and ip.get("floating_ips"):
                    return ip["floating_ips"][0]
        return ""


def main(argv: list[str]) -> None:
    instances_path, network_id = Path(argv[0]), argv[1]
    port = int(argv[2]) if len(argv) > 2 else 80
    server = MetadataServer((ADDRESS, port), instances_path, network_id)
    server.serve_forever()


if __name__ == "__main__":
    main(sys.argv[1:])
