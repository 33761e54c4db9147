"""``/healthcheck`` of a `kilonova serve` process on PostgreSQL and RabbitMQ goes 503 naming what failed.

A scheduler process (its API database on PostgreSQL, RPC on a RabbitMQ vhost of its own, /healthcheck on
its ``metrics_port``): PostgreSQL refusing the database's connections, then the broker closing the process's
connection and refusing it back, each make the check answer 503 with the failing check named; each
answers 200 again once the service is back.
"""
from __future__ import annotations

import subprocess
import sys

import httpx
import pytest

from tests.cloud import free_port_block, run_manage, wait_for
from tests.distributed.infra import Databases, _psql, have, rabbit_vhost, rabbitmqctl, vhost_of

pytestmark = pytest.mark.skipif(not (have("psql") and have("rabbitmqctl")),
                                reason="needs PostgreSQL and RabbitMQ (their clients psql and rabbitmqctl)")


def _health(port: int) -> httpx.Response:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/healthcheck", timeout=10)
    except httpx.TransportError as exc:  # not listening yet
        return httpx.Response(599, text=str(exc))


def test_healthcheck_goes_503_when_postgresql_or_the_broker_is_gone(tmp_path):
    databases = Databases("postgresql")
    url = databases.url("api")
    database = url.rsplit("/", 1)[1]
    port = free_port_block(1)
    with rabbit_vhost("kn-health") as transport_url:
        config = tmp_path / "kilonova.conf"
        config.write_text(f"[DEFAULT]\nmetrics_port = {port}\ntransport_url = {transport_url}\n"
                          f"log_dir = {tmp_path / 'logs'}\n[api_database]\nconnection = {url}\n")
        options = ["--config", str(config), "--state-dir", str(tmp_path / "state")]
        run_manage(options, "api_db", "sync")
        process = subprocess.Popen([sys.executable, "-m", "kilonova.cli", *options, "serve", "scheduler"],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_for(lambda: _health(port).status_code == 200, "the health check to pass", timeout=60)

            # PostgreSQL refuses new connections to the database and drops the open ones.
            subprocess.run(_psql(f'ALTER DATABASE "{database}" WITH ALLOW_CONNECTIONS false'), check=True,
                           capture_output=True, timeout=60)
            databases.cut_connections()
            refused = _health(port)
            assert refused.status_code == 503
            assert "database" in refused.text and "unreachable" in refused.text, refused.text
            subprocess.run(_psql(f'ALTER DATABASE "{database}" WITH ALLOW_CONNECTIONS true'), check=True,
                           capture_output=True, timeout=60)
            wait_for(lambda: _health(port).status_code == 200, "the database check to pass again", timeout=30)

            # The broker closes the process's connection and refuses it back (no permissions on the vhost).
            vhost = vhost_of(transport_url)
            rabbitmqctl(transport_url, "clear_permissions", "-p", vhost, "guest")
            rabbitmqctl(transport_url, "close_all_connections", "-p", vhost, "health check test")
            gone = wait_for(lambda: (lambda r: r if r.status_code == 503 else None)(_health(port)),
                            "the broker check to fail", timeout=30)
            assert gone.text.startswith("broker"), gone.text
            rabbitmqctl(transport_url, "set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
            wait_for(lambda: _health(port).status_code == 200, "the broker check to pass again", timeout=60)
        finally:
            process.terminate()
            process.wait(20)
            subprocess.run(_psql(f'ALTER DATABASE "{database}" WITH ALLOW_CONNECTIONS true'),
                           capture_output=True, timeout=60)
            databases.drop_all()
