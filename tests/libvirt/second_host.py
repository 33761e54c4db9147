"""A second libvirt "host" on this machine, for live migration between two libvirt daemons.

libvirt refuses to migrate a guest to the daemon it runs on (it compares the daemons' host UUIDs), and a
system libvirtd's paths (/run/libvirt, /var/lib/libvirt, /etc/libvirt, ...) are fixed at build time. So the
second daemon runs in a network namespace of its own (``ip netns exec``, joined to the root namespace by a
veth pair: QEMU's migration stream and the disks' NBD copy cross it) and a mount namespace of its own where
a private tmpfs is /run (the system's /run/libvirt stays reachable at ``<dir>/system-run``) and directories
of its own are bind-mounted on /etc/libvirt (a libvirtd.conf with
its own ``host_uuid``, and its socket directory outside the namespace), /var/lib/libvirt, /var/cache/libvirt
and /var/log/libvirt. It has its own virtlogd (the serial console logs). The source's libvirtd reaches it at
``qemu+unix:///system?socket=<dir>/sock/libvirt-sock``, which the test's destination driver uses too.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
import uuid as uuid_mod
from pathlib import Path


class SecondHostError(RuntimeError):
    pass


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if check and result.returncode != 0:
        raise SecondHostError(f"ip {' '.join(args)}: {result.stderr.strip()}")
    return result


class SecondLibvirtd:
    def __init__(self, root: Path, tag: str, subnet: int):
        self.root = root
        self.namespace = f"kn-lm-{tag}"
        self.outside = f"kvlm{tag}"[:15]
        self.host_address, self.address = f"10.251.{subnet}.1", f"10.251.{subnet}.2"
        self.socket = root / "sock" / "libvirt-sock"
        self.uri = f"qemu+unix:///system?socket={self.socket}"
        # How this daemon reaches the system one (its /run is private; the system /run/libvirt is bound here).
        self.system_uri = f"qemu+unix:///system?socket={root / 'system-run' / 'libvirt-sock'}"
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 60, wait: bool = True) -> None:
        """Namespaces, veth pair and daemon; with ``wait`` False the daemon is left starting (``wait_ready``):
        the veth addresses exist already."""
        for name in ("etc", "lib", "cache", "log", "sock", "system-run"):
            (self.root / name).mkdir(parents=True, exist_ok=True)
        for conf in Path("/etc/libvirt").glob("*.conf"):
            shutil.copyfile(conf, self.root / "etc" / conf.name)
        (self.root / "etc" / "qemu").mkdir(exist_ok=True)  # no domains nor networks of the system daemon
        with open(self.root / "etc" / "libvirtd.conf", "a") as fh:
            fh.write(f'\nhost_uuid = "{uuid_mod.uuid4()}"\nunix_sock_dir = "{self.root / "sock"}"\n'
                     'auth_unix_rw = "none"\nauth_unix_ro = "none"\n')
        _ip("netns", "add", self.namespace)
        _ip("link", "add", self.outside, "type", "veth", "peer", "name", "eth0", "netns", self.namespace)
        _ip("addr", "add", f"{self.host_address}/24", "dev", self.outside)
        _ip("link", "set", self.outside, "up")
        for args in (("addr", "add", f"{self.address}/24", "dev", "eth0"), ("link", "set", "eth0", "up"),
                     ("link", "set", "lo", "up")):
            _ip("-n", self.namespace, *args)
        mounts = " && ".join(f"mount --bind {self.root / name} {target}" for name, target in (
            ("etc", "/etc/libvirt"), ("lib", "/var/lib/libvirt"), ("cache", "/var/cache/libvirt"),
            ("log", "/var/log/libvirt")))
        # The system daemon's socket stays reachable from in here (a migration back to it needs that).
        script = (f"mount --bind /run/libvirt {self.root / 'system-run'} && "
                  f"mount -t tmpfs tmpfs /run && mkdir -p /run/libvirt && {mounts} && "
                  f"(virtlogd & echo $! > {self.root / 'virtlogd.pid'}) && exec libvirtd")
        log = open(self.root / "libvirtd.log", "w")
        self.process = subprocess.Popen(["ip", "netns", "exec", self.namespace, "unshare", "--mount",
                                         "--propagation", "private", "sh", "-c", script], stdout=log,
                                        stderr=subprocess.STDOUT)
        if wait:
            self.wait_ready(timeout)

    def wait_ready(self, timeout: float = 60) -> None:
        assert self.process is not None, "start() first"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SecondHostError(f"the second libvirtd exited: {(self.root / 'libvirtd.log').read_text()}")
            if self.socket.exists() and subprocess.run(
                    ["virsh", "-c", self.uri, "version"], capture_output=True, timeout=30).returncode == 0:
                return
            time.sleep(0.2)
        raise SecondHostError(f"the second libvirtd did not answer within {timeout:.0f}s")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            for name in subprocess.run(["virsh", "-c", self.uri, "list", "--all", "--name"], capture_output=True,
                                       text=True, timeout=30).stdout.split():
                subprocess.run(["virsh", "-c", self.uri, "destroy", name], capture_output=True, timeout=30)
                subprocess.run(["virsh", "-c", self.uri, "undefine", name], capture_output=True, timeout=30)
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        pid_file = self.root / "virtlogd.pid"
        if pid_file.exists():
            try:
                os.kill(int(pid_file.read_text()), signal.SIGTERM)
            except (OSError, ValueError):
                pass
        _ip("netns", "del", self.namespace, check=False)
        _ip("link", "del", self.outside, check=False)
