"""Two real compute hosts under one Kilonova control plane, each a ``kilonova serve compute`` with the libvirt
driver in a network namespace of its own, for moves of real guests through the whole stack.

* the control plane (identity, placement, image, network, api, conductor, scheduler) is one ``kilonova serve``
  process on SQLite, its APIs on the address of the root namespace's end of the veth pair to host B (so that
  both hosts reach them), its RPC on a throw-away vhost of the machine's RabbitMQ;
* host A is ``kilonova serve compute`` in the root namespace, on the system libvirtd;
* host B is ``kilonova serve compute`` run by ``nsenter --net`` in the namespace of the second libvirtd
  (``second_host``), which it drives; it reaches the broker (listening on 127.0.0.1 only) through a forwarder
  the deployment binds on the veth address. Its networks' bridges, DHCP servers and its guests' taps live in
  that namespace.

Each host has its own state directory, instances path and image cache: live migrations copy the disks.
``python -m tests.libvirt.two_hosts`` starts it all and waits (Ctrl-C stops), for trying things by hand.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterator

from tests.cloud import Clients, free_port_block
from tests.distributed.cluster import Process, manage, write_ini
from tests.distributed.forwarder import Forwarder
from tests.distributed.infra import RABBIT, rabbit_vhost
from tests.libvirt import hostsetup
from tests.libvirt.second_host import SecondLibvirtd

HOST_A, HOST_B = "kn-real-a", "kn-real-b"
CONTROL = ["identity", "placement", "image", "network", "api", "conductor", "scheduler"]


class TwoHosts(Clients):
    """The running deployment: the real CLIs (``Clients``) on its APIs, its processes, host B's libvirtd."""

    def __init__(self, workdir: Path, second: SecondLibvirtd, config: Path):
        self.workdir = workdir
        self.second = second
        self.config = config
        self.clouds_yaml = workdir / "clouds.yaml"
        self.base_port = 0
        self.processes: dict[str, Process] = {}
        self.state_dirs = {HOST_A: workdir / HOST_A, HOST_B: workdir / HOST_B}

    @property
    def urls(self) -> dict[str, str]:  # the APIs listen on the veth address, not on 127.0.0.1
        return {name: url.replace("127.0.0.1", self.second.host_address) for name, url in super().urls.items()}

    def libvirt_uri(self, host: str) -> str:
        return "qemu:///system" if host == HOST_A else self.second.uri

    def domains(self, host: str) -> list[str]:
        """The running domains of ``host``'s libvirtd that live under its instances path."""
        virsh = ["virsh", "-c", self.libvirt_uri(host)]
        names = subprocess.run([*virsh, "list", "--name"], capture_output=True, text=True, timeout=30).stdout.split()
        return [name for name in names if str(self.state_dirs[host]) in subprocess.run(
            [*virsh, "dumpxml", name], capture_output=True, text=True, timeout=30).stdout]

    def manage(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return manage(self.config, *args, check=check)

    def logs(self, tail: int = 3000) -> str:
        return "\n".join(f"===== {name}\n{p.log.read_text(errors='replace')[-tail:]}"
                         for name, p in self.processes.items())


def _sections(workdir: Path, second: SecondLibvirtd, transport_url: str, base_port: int) -> dict:
    names = ("identity", "compute", "placement", "image", "network", "block-storage")
    return {
        "DEFAULT": {"state_dir": str(workdir / "control"), "host": "controller", "my_ip": second.host_address,
                    "transport_url": transport_url, "report_interval": "2", "service_down_time": "20"},
        "ports": {name: str(base_port + i) for i, name in enumerate(names)},
        "endpoints": {f"{name}_host": second.host_address for name in names},
        "identity": {"admin_password": "admin-secret", "demo_password": "demo-secret", "password_hash_rounds": "10"},
        "service_user": {"password": "service-secret"},
        "compute": {"compute_driver": "libvirt", "sync_power_state_interval": "120"},
        "libvirt": {"shutdown_timeout": "20", "image_cache_manager_interval": "0"},
        "vnc": {"enabled": "false"},
    }


def _variant(sections: dict, path: Path, overrides: dict) -> Path:
    merged = {section: dict(options) for section, options in sections.items()}
    for section, options in overrides.items():
        merged.setdefault(section, {}).update(options)
    return write_ini(path, merged)


@contextlib.contextmanager
def two_libvirt_hosts(guest: hostsetup.Guest | None = None, tag: str = "",
                      volumes: bool = False) -> Iterator[TwoHosts]:
    """The deployment, up and with both hosts' services up; everything removed afterwards (logs kept when
    KILONOVA_KEEP_DIST_LOGS is set). ``guest``: hostsetup's (prepared here when not given). ``volumes``: the
    control plane runs the volume service too, its volumes on the control's machine: host A (the same
    address) opens their files, host B (another address) reaches them over NBD on the veth pair."""
    from tests.libvirt.test_real_guest import remove_leftovers

    guest = guest or hostsetup.prepare()
    workdir = Path(tempfile.mkdtemp(prefix="kilonova-two-hosts-"))
    os.chmod(workdir, 0o755)  # QEMU runs as libvirt-qemu and must reach the instance files
    # Its own namespace name and subnet: test_live_migration's second daemon may run in this process too.
    tag = tag or f"m{os.getpid() % 10000}"
    second = SecondLibvirtd(workdir / "libvirtd-b", tag, 150 + os.getpid() % 50)
    with contextlib.ExitStack() as stack:
        if not os.environ.get("KILONOVA_KEEP_DIST_LOGS"):
            stack.callback(shutil.rmtree, workdir, True)
        stack.callback(second.stop)
        second.start(wait=False)  # its daemon starts while the broker and the control plane do
        transport_url = stack.enter_context(rabbit_vhost("kn-real"))
        broker = stack.enter_context(Forwarder(RABBIT, (second.host_address, 0)))
        sections = _sections(workdir, second, transport_url, free_port_block())
        if volumes:
            (workdir / "volumes").mkdir(mode=0o711)  # QEMU (libvirt-qemu) on host A opens the files
            os.chmod(workdir / "volumes", 0o711)
            sections["volume"] = {"volumes_dir": str(workdir / "volumes"), "target_ip_address": second.host_address}
        deployment = TwoHosts(workdir, second, write_ini(workdir / "control.conf", sections))
        deployment.base_port = int(sections["ports"]["identity"])
        for host in (HOST_A, HOST_B):
            stack.callback(remove_leftovers, deployment.state_dirs[host])

        def stop() -> None:
            for process in deployment.processes.values():
                process.kill(15)
            if volumes:   # the volume service leaves its exports up when it stops (guests keep their disks)
                stop_exports(workdir)

        stack.callback(stop)
        control = Process("control", ["--config", str(deployment.config), "serve", *CONTROL,
                                      *(["volume"] if volumes else [])],
                          workdir / "control.log")
        deployment.processes["control"] = control
        a = _variant(sections, workdir / f"{HOST_A}.conf", {
            "DEFAULT": {"host": HOST_A, "state_dir": str(deployment.state_dirs[HOST_A])},
            # Host B's libvirtd reaches the system one through the socket bound into its mount namespace.
            "libvirt": {"live_migration_uri": second.system_uri, "live_migration_inbound_addr": second.host_address}})
        b = _variant(sections, workdir / f"{HOST_B}.conf", {
            "DEFAULT": {"host": HOST_B, "state_dir": str(deployment.state_dirs[HOST_B]), "my_ip": second.address,
                        "transport_url": transport_url.replace(f"@{RABBIT[0]}:{RABBIT[1]}/",
                                                               f"@{second.host_address}:{broker.port}/")},
            "libvirt": {"connection_uri": second.uri, "live_migration_uri": second.uri,
                        "live_migration_inbound_addr": second.address}})
        try:
            control.wait_ready(120)
            second.wait_ready()
            # nsenter --net, not ip netns exec: the DHCP namespaces host B makes must stay visible to all.
            for name, config, prefix in ((HOST_A, a, ()), (HOST_B, b, (
                    "nsenter", f"--net=/run/netns/{second.namespace}"))):
                deployment.processes[name] = Process(name, ["--config", str(config), "serve", "compute"],
                                                     workdir / f"{name}.log", prefix=prefix)
            for name in (HOST_A, HOST_B):
                deployment.processes[name].wait_ready(120)
            from kilonova.aio import write_client_config
            from kilonova.config import Config

            write_client_config(Config.load(deployment.config), deployment.clouds_yaml)
            _wait_hosts_up(deployment)
            yield deployment
        except BaseException:
            print(deployment.logs())
            raise


def stop_exports(workdir: Path) -> None:
    """The qemu-nbd processes serving volumes of this deployment (a test that failed with volumes attached)."""
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().split(b"\0")
        except OSError:
            continue
        if args and args[0].endswith(b"qemu-nbd") and any(str(workdir).encode() in arg for arg in args):
            with contextlib.suppress(OSError, ValueError):
                os.kill(int(cmdline.parent.name), 15)


def _wait_hosts_up(deployment: TwoHosts, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    with deployment.http("compute") as api:
        while True:
            services = api.get("/os-services", params={"binary": "nova-compute"}).json().get("services", [])
            if {s["host"] for s in services if s["state"] == "up"} >= {HOST_A, HOST_B}:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"both compute hosts were not up within {timeout}s: {services}")
            time.sleep(0.5)


if __name__ == "__main__":
    import signal

    # SIGTERM too (a background job ignores SIGINT): the deployment is taken down either way.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    with two_libvirt_hosts() as running:
        print(f"two libvirt hosts up; OS_CLIENT_CONFIG_FILE={running.clouds_yaml} OS_CLOUD=kilonova "
              f"(logs in {running.workdir}; Ctrl-C stops)", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            signal.pause()
