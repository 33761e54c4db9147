"""One deployment for the cold- and live-migration fault modules of this package (RabbitMQ + PostgreSQL).

Both need hosts of their own in cell1 that die alone and a conductor that ends stuck moves within seconds;
their options do not meet (``move_timeout`` ends cold migrations, ``live_migration_stall_timeout`` live ones,
``live_migration_delay`` only slows live ones), so they share one start-up. Each test boots its own servers
on its own hosts and deletes them, and restarts whatever it killed.

Extra compute processes, one fake host each in cell1:
``rz-a1`` (a source), ``rz-b1`` (finish_migration held 30 s), ``rz-c1`` (migrate_disk_and_power_off held
30 s), ``lm-a1`` and ``lm-b1`` (live migrations take 20 s everywhere), ``vs-a1`` (its assisted volume snapshots and
volume extends wait at a gate the test opens). Volumes are qcow2 files (snapshots of attached ones are the host's work).
"""
from __future__ import annotations

import pytest

from tests.distributed.cluster import two_cell_deployment
from tests.distributed.moves.moves import ASSIST_TIMEOUT, MOVE_TIMEOUT, STALL


@pytest.fixture(scope="package")
def cluster():
    extra = {"conductor": {"reconcile_interval": "1", "live_migration_stall_timeout": str(STALL)},
             "compute": {"move_timeout": str(MOVE_TIMEOUT)}, "fake_driver": {"live_migration_delay": "20"},
             "volume": {"volume_format": "qcow2", "assisted_snapshot_timeout": str(ASSIST_TIMEOUT)}}
    extra_computes = (("rz-a", ""), ("rz-b", "finish_migration=30"), ("rz-c", "migrate_disk_and_power_off=30"),
                      ("lm-a", ""), ("lm-b", ""))
    gated = {"step_gates": "volume_snapshot_create,volume_snapshot_delete,extend_volume", "step_gate_timeout": "20"}
    with two_cell_deployment("postgresql", second_controller=False, extra=extra) as deployed:
        started = [deployed.start(name, ["compute"], deployed.variant(name, {
            "compute": {"cell": "cell1"}, "fake_driver": {"hosts": "1", "host_prefix": name, "step_delays": delays}}))
            for name, delays in extra_computes]
        started.append(deployed.start("vs-a", ["compute"], deployed.variant("vs-a", {
            "compute": {"cell": "cell1"}, "fake_driver": {"hosts": "1", "host_prefix": "vs-a", **gated}})))
        for process in started:
            process.wait_ready()
        yield deployed


@pytest.fixture
def api(cluster):
    with cluster.compute_api("2.80") as client:
        yield client
