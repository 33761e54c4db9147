"""The packaging files (packaging/) are valid and agree with the code and with each other.

No container engine or registry is reachable here, so the image is not built and the compose file not run;
instead: the systemd units pass ``systemd-analyze verify``; every compose service runs a real ``kilonova
serve`` command with the mounted configuration; the configuration loads, names a database that the
PostgreSQL init script creates for every database section, the broker and database credentials compose
gives, and an endpoint host that is the compose service serving that API; the Containerfile copies what
exists and installs an extra pyproject declares.
"""
from __future__ import annotations

import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from kilonova.aio import SERVICE_CLASSES
from kilonova.common.catalog import CATALOG_PATHS, catalog_urls
from kilonova.compute.agent.service import fake_host_names
from kilonova.config import Config

ROOT = Path(__file__).resolve().parents[2]
PACKAGING = ROOT / "packaging"
# Which `kilonova serve` service answers each API of the catalog.
SERVES_API = {"identity": "identity", "compute": "api", "placement": "placement", "image": "image",
              "network": "network", "block-storage": "volume"}


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((PACKAGING / "compose.yaml").read_text())


@pytest.fixture(scope="module")
def conf(tmp_path_factory) -> Config:
    return Config.load(PACKAGING / "kilonova-distributed.conf", state_dir=tmp_path_factory.mktemp("state"))


def _kilonova_services(compose: dict) -> dict[str, dict]:
    return {name: spec for name, spec in compose["services"].items() if spec.get("image", "").endswith("kilonova:latest")}


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze (systemd)")
def test_systemd_units_verify_for_every_service(tmp_path):
    kilonova = shutil.which("kilonova") or str(Path(__import__("sys").executable).with_name("kilonova"))
    units = []
    for unit in (PACKAGING / "systemd").iterdir():
        text = unit.read_text().replace("/usr/bin/kilonova", kilonova)  # where this machine has it
        if unit.name == "kilonova@.service":
            for service in SERVICE_CLASSES:  # every instance `kilonova serve` accepts
                units.append(tmp_path / f"kilonova@{service}.service")
                units[-1].write_text(text)
        else:
            units.append(tmp_path / unit.name)
            units[-1].write_text(text)
    result = subprocess.run(["systemd-analyze", "verify", *map(str, units)], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    template = (PACKAGING / "systemd" / "kilonova@.service").read_text()
    assert re.search(r"^ExecStart=/usr/bin/kilonova --config /etc/kilonova/kilonova.conf serve %i$", template, re.M)


def test_compose_runs_a_small_distributed_cloud(compose):
    services = _kilonova_services(compose)
    assert {"rabbitmq", "postgres"} <= set(compose["services"])
    commands = {name: spec["command"] for name, spec in services.items()}
    served = {name: command[3:] for name, command in commands.items()}
    for name, command in commands.items():
        assert command[:3] == ["--config", "/etc/kilonova/kilonova.conf", "serve"], (name, command)
        assert served[name] and set(served[name]) <= set(SERVICE_CLASSES), (name, command)
        mounts = [volume.split(":")[:2] for volume in services[name]["volumes"]]
        assert ["./kilonova-distributed.conf", "/etc/kilonova/kilonova.conf"] in mounts
        assert (PACKAGING / "kilonova-distributed.conf").exists()
    everything = [service for names in served.values() for service in names]
    for needed in ("identity", "placement", "image", "network", "volume", "api", "conductor", "scheduler"):
        assert needed in everything, needed
    computes = [name for name, names in served.items() if "compute" in names]
    assert len(computes) >= 2
    hostnames = [services[name].get("hostname") for name in computes]
    assert None not in hostnames and len(set(hostnames)) == len(hostnames)
    assert (PACKAGING / compose["x-kilonova"]["build"]["context"]).resolve() == ROOT


def test_the_configuration_matches_what_compose_provides(compose, conf, tmp_path):
    services = _kilonova_services(compose)
    served = {name: spec["command"][3:] for name, spec in services.items()}
    # Each API is reached at the compose service that serves it, on the port compose publishes.
    for api, serve_name in SERVES_API.items():
        host = conf.get("endpoints", f"{api}_host")
        assert serve_name in served[host], (api, host)
        port = conf.getint("ports", api)
        assert f"{port}:{port}" in services[host].get("ports", []), (api, services[host].get("ports"))
    public = catalog_urls(conf, "public")
    assert all(urlsplit(url).hostname == "127.0.0.1" for url in public.values())
    assert public["block-storage"].endswith(CATALOG_PATHS["block-storage"])
    # The broker and the databases with compose's credentials; every database created by the init script.
    broker = urlsplit(conf.get("DEFAULT", "transport_url"))
    rabbit = compose["services"]["rabbitmq"]["environment"]
    assert (broker.scheme, broker.hostname, broker.username, broker.password) == (
        "rabbit", "rabbitmq", rabbit["RABBITMQ_DEFAULT_USER"], rabbit["RABBITMQ_DEFAULT_PASS"])
    postgres = compose["services"]["postgres"]["environment"]
    created = set(re.findall(r"CREATE DATABASE (\w+) OWNER (\w+);", (PACKAGING / "postgres-init.sql").read_text()))
    database_sections = [section for section in ("database", "cell0_database", "api_database",
                                                 "placement_database", "identity_database", "image_database",
                                                 "network_database", "volume_database")]
    names = set()
    for section in database_sections:
        url = urlsplit(conf.get(section, "connection"))
        assert url.scheme == "postgresql+psycopg" and url.hostname == "postgres", section
        assert (url.username, url.password) == (postgres["POSTGRES_USER"], postgres["POSTGRES_PASSWORD"])
        names.add(url.path.lstrip("/"))
        assert (url.path.lstrip("/"), postgres["POSTGRES_USER"]) in created, section
    assert len(names) == len(database_sections)  # no two services share a database
    # A compute container simulates one host named after its hostname.
    conf.set("DEFAULT", "host", "compute2")
    assert fake_host_names(conf) == ["compute2"]


def test_the_containerfile_builds_from_what_the_repository_has():
    text = (PACKAGING / "Containerfile").read_text()
    assert re.search(r"^FROM debian:\S+", text, re.M)
    for sources in re.findall(r"^COPY (.+) \S+$", text, re.M):
        for source in sources.split():
            assert (ROOT / source).exists(), source
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    for extra in re.findall(r"'/src\[(\w+)\]'", text):
        assert extra in extras, extra
    assert 'ENTRYPOINT ["kilonova"]' in text


def _blocks(markdown: str, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", markdown, re.S)


def test_the_distributed_recipe_is_complete_and_consistent(tmp_path):
    """docs/distributed.md: its configuration loads, its databases are the ones it creates, its commands
    start every service a cloud needs with two compute hosts of their own names, and its client variables
    log in as the configuration's admin. (tests/distributed runs this layout for real.)"""
    text = (ROOT / "docs" / "distributed.md").read_text()
    config = tmp_path / "kilonova.conf"
    config.write_text(_blocks(text, "ini")[0])
    conf = Config.load(config, state_dir=tmp_path / "state")
    shell = "\n".join(_blocks(text, "sh"))
    created = set(re.search(r"for db in ([\w ]+); do", shell).group(1).split())
    connections = {conf.get(section, "connection").rsplit("/", 1)[1]
                   for section in ("database", "cell0_database", "api_database", "placement_database",
                                   "identity_database", "image_database", "network_database", "volume_database")}
    assert connections == created
    assert urlsplit(conf.get("DEFAULT", "transport_url")).username in shell  # the RabbitMQ user it adds
    # The per-host files, made with the recipe's own sed commands.
    hosts = []
    for line in re.findall(r"^sed .*$", shell, re.M):
        made = subprocess.run(line.split(" > ")[0].replace("/etc/kilonova/kilonova.conf", str(config)),
                              shell=True, capture_output=True, text=True, check=True).stdout
        (tmp_path / "host.conf").write_text(made)
        hosts.append(Config.load(tmp_path / "host.conf", state_dir=tmp_path / "state").get("DEFAULT", "host"))
    assert hosts == ["compute1", "compute2"]
    served = [line.split(" serve ")[1].split() for line in shell.splitlines() if " serve " in line]
    assert [names for names in served if names == ["compute"]] == [["compute"], ["compute"]]
    assert {name for names in served for name in names} == {"identity", "placement", "image", "network", "volume",
                                                         "api", "conductor", "scheduler", "compute"}
    assert f"OS_PASSWORD={conf.get('identity', 'admin_password')}" in shell
