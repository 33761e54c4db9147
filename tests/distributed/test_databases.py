"""Every store migrates on PostgreSQL and MariaDB (throw-away databases) and ends up matching its models.

A database of the previous release (the revision before head, with rows in it) upgrades on
SQLite, PostgreSQL and MariaDB and keeps its data; processes migrating one database at once
take turns.
"""
from __future__ import annotations

import importlib
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from datetime import datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from kilonova.common.db import Database, migrate, migration_lock
from kilonova.identity import passwords
from tests.distributed.infra import Databases

# store -> (migrations directory, "module:Base")
STORES = {
    "nova_api": ("kilonova/compute/db/api_migrations", "kilonova.compute.db.api_models:APIBase"),
    "cell": ("kilonova/compute/db/cell_migrations", "kilonova.compute.db.cell_models:CellBase"),
    "placement": ("kilonova/placement/migrations", "kilonova.placement.objects.models:PlacementBase"),
    "identity": ("kilonova/identity/migrations", "kilonova.identity.models:IdentityBase"),
    "image": ("kilonova/image/migrations", "kilonova.image.models:ImageBase"),
    "network": ("kilonova/network/migrations", "kilonova.network.models:NetworkBase"),
    "volume": ("kilonova/volume/migrations", "kilonova.volume.models:VolumeBase"),
}
ROOT = Path(__file__).resolve().parents[2]


def _metadata(spec: str) -> sa.MetaData:
    module, name = spec.split(":")
    return getattr(importlib.import_module(module), name).metadata


def schema_differences(database: Database, metadata: sa.MetaData) -> list:
    """What Alembic's autogenerate would still change: nothing, when migrations and models agree."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    with database.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        diffs = compare_metadata(context, metadata)
    # Server defaults and comments are not part of the models' contract.
    return [d for d in diffs if not (isinstance(d, list) and d and d[0][0] in ("modify_default", "modify_comment"))]


@pytest.fixture(scope="module", params=["postgresql", "mysql"])
def server(request):
    databases = Databases(request.param)
    yield databases
    databases.drop_all()


@pytest.mark.parametrize("store", sorted(STORES))
def test_migrations_run_and_match_the_models(server, store):
    migrations, base = STORES[store]
    database = Database(server.url(store), name=store, workers=1)
    try:
        metadata = _metadata(base)
        migrate(database, ROOT / migrations, metadata)
        migrate(database, ROOT / migrations, metadata)  # idempotent: a second sync changes nothing
        assert schema_differences(database, metadata) == []
    finally:
        database.close()


# ---------------------------------------------------------------------------- upgrades from the last release

T0 = datetime(2026, 11, 23, 10, 0, 0)
CELL = "0f0e0d0c-0000-4000-8000-00000000c311"
INSTANCE = "5e7a1b2c-0000-4000-8000-0000000000a1"
SHELVED = "5e7a1b2c-0000-4000-8000-0000000000a2"
SHELVED_IMAGE = "1a000000-0000-4000-8000-0000000000e1"
NETWORK, SUBNET, PORT = ("4e700000-0000-4000-8000-00000000000" + c for c in "123")

OLD_RELEASE_HASH = passwords.hash_password("old-secret", 14)

# What an operator's database holds at the revision before head, table by table in insertion order.
PREVIOUS_RELEASE_ROWS = {
    "nova_api": {
        "cell_mappings": [{"id": 1, "uuid": CELL, "name": "cell1", "transport_url": "rabbit://u:p@h:5672/",
                           "database_connection": "sqlite:///cell1.sqlite", "disabled": False, "created_at": T0}],
        "host_mappings": [{"id": 1, "cell_id": 1, "host": "host1"}],
        "instance_mappings": [{"id": 1, "instance_uuid": INSTANCE, "cell_id": 1, "project_id": "p1",
                               "queued_for_delete": False, "created_at": T0}],
        "flavors": [{"id": 1, "flavorid": "42", "name": "m1.kept", "memory_mb": 2048, "vcpus": 2, "root_gb": 20,
                     "ephemeral_gb": 0, "swap": 0, "rxtx_factor": 1.0, "disabled": False, "is_public": True,
                     "created_at": T0}],
        "flavor_extra_specs": [{"id": 1, "flavor_id": 1, "key": "hw:cpu_policy", "value": "dedicated"}],
        "key_pairs": [{"id": 1, "name": "k1", "user_id": "u1", "fingerprint": "aa:bb", "public_key": "ssh-ed25519 A",
                       "type": "ssh", "created_at": T0}],
        "aggregates": [{"id": 1, "uuid": "a9e1c0de-0000-4000-8000-0000000000a9", "name": "rack1", "created_at": T0}],
        "aggregate_hosts": [{"id": 1, "host": "host1", "aggregate_id": 1, "created_at": T0}],
        "aggregate_metadata": [{"id": 1, "aggregate_id": 1, "key": "availability_zone", "value": "zone1",
                                "created_at": T0}],
        "build_requests": [{"id": 1, "instance_uuid": "5e7a1b2c-0000-4000-8000-0000000000b2", "project_id": "p1",
                            "instance": {"uuid": "5e7a1b2c-0000-4000-8000-0000000000b2", "project_id": "p1",
                                         "flavor": {"name": "m1.kept", "vcpus": 2, "memory_mb": 2048}},
                            "vcpus": 2, "memory_mb": 2048, "created_at": T0}],
    },
    "cell": {
        "services": [{"id": 1, "uuid": "5e000000-0000-4000-8000-000000000001", "host": "host1",
                      "binary": "nova-compute", "topic": "compute", "report_count": 7, "disabled": False,
                      "forced_down": False, "version": 1, "created_at": T0, "deleted": 0}],
        "compute_nodes": [{"id": 1, "uuid": "c0000000-0000-4000-8000-000000000001", "service_id": 1,
                           "host": "host1", "hypervisor_hostname": "host1", "hypervisor_type": "fake",
                           "hypervisor_version": 1000, "vcpus": 8, "memory_mb": 16384, "local_gb": 100,
                           "vcpus_used": 2, "memory_mb_used": 2048, "local_gb_used": 20, "running_vms": 1,
                           "cpu_info": "{}", "created_at": T0, "deleted": 0}],
        "instances": [{"id": 1, "uuid": INSTANCE, "project_id": "p1", "user_id": "u1", "host": "host1",
                       "vm_state": "active", "power_state": 1, "locked": False,
                       "flavor": {"name": "m1.kept", "vcpus": 2, "memory_mb": 2048, "root_gb": 20},
                       "vcpus": 2, "memory_mb": 2048,
                       "metadata": {"k": "v"}, "system_metadata": {}, "network_info": [], "security_groups": [],
                       "tags": [], "created_at": T0, "deleted": 0},
                      {"id": 2, "uuid": SHELVED, "project_id": "p1", "user_id": "u1", "host": None,
                       "vm_state": "shelved_offloaded", "power_state": 0, "locked": False,
                       "flavor": {"name": "m1.kept", "vcpus": 2, "memory_mb": 2048, "root_gb": 20},
                       "vcpus": 2, "memory_mb": 2048,
                       "metadata": {}, "system_metadata": {"shelved_image_id": SHELVED_IMAGE}, "network_info": [],
                       "security_groups": [], "tags": [], "created_at": T0, "deleted": 0}],
    },
    "placement": {
        "resource_providers": [{"id": 1, "uuid": "c0000000-0000-4000-8000-000000000001", "name": "host1",
                                "generation": 3, "root_provider_id": 1, "created_at": T0}],
    },
    "identity": {
        "domains": [{"id": "default", "name": "Default", "enabled": True, "extra": {}, "created_at": T0}],
        # Hashed as the release before 0002 did (scrypt, N=2^14).
        "users": [{"id": "u1", "name": "alice", "domain_id": "default", "enabled": True,
                   "password_hash": OLD_RELEASE_HASH, "extra": {}, "created_at": T0}],
    },
    "volume": {
        "volume_types": [{"id": "7e000000-0000-4000-8000-000000000001", "name": "fast", "description": None,
                          "is_public": True, "created_at": T0, "updated_at": None}],
        "volumes": [{"id": "7e000000-0000-4000-8000-000000000002", "project_id": "p1", "user_id": "u1",
                     "name": "kept", "description": None, "size": 3, "status": "available",
                     "availability_zone": "nova", "volume_type_id": "7e000000-0000-4000-8000-000000000001",
                     "bootable": False, "created_at": T0, "updated_at": None}],
    },
    "network": {
        "networks": [{"id": NETWORK, "project_id": "p1", "name": "private", "status": "ACTIVE",
                      "admin_state_up": True, "shared": True, "external": False, "mtu": 1500,
                      "port_security_enabled": True, "availability_zone_hints": [], "description": "", "tags": [],
                      "created_at": T0, "updated_at": T0, "revision_number": 1}],
        "subnets": [{"id": SUBNET, "network_id": NETWORK, "project_id": "p1", "name": "private-subnet",
                     "ip_version": 4, "cidr": "10.0.0.0/24", "gateway_ip": "10.0.0.1", "enable_dhcp": True,
                     "allocation_pools": [{"start": "10.0.0.2", "end": "10.0.0.254"}], "dns_nameservers": [],
                     "host_routes": [], "description": "", "tags": [], "created_at": T0, "updated_at": T0,
                     "revision_number": 0}],
        "ports": [{"id": PORT, "network_id": NETWORK, "project_id": "p1", "name": "", "mac_address": "fa:16:3e:00:00:01",
                   "admin_state_up": True, "status": "ACTIVE", "device_id": INSTANCE, "device_owner": "compute:nova",
                   "binding_host_id": "host1", "binding_profile": {}, "binding_vnic_type": "normal",
                   "port_security_enabled": True, "description": "", "tags": [], "created_at": T0, "updated_at": T0,
                   "revision_number": 1}],
        "ip_allocations": [{"id": 1, "port_id": PORT, "subnet_id": SUBNET, "network_id": NETWORK,
                            "ip_address": "10.0.0.3"}],
    },
}


def _api_head_has_server_groups(database: Database) -> None:
    from kilonova.compute.db import build_requests, server_groups

    # The pending server of the old release still counts for its project's quota.
    assert database.run_sync(build_requests.usage, "p1", write=False) == {"instances": 1, "cores": 2, "ram": 2048}
    # 0005: the old release had no server groups; the project's first one is made and counted.
    assert database.run_sync(server_groups.count, "p1", write=False) == 0
    made = database.run_sync(server_groups.create, {
        "uuid": "6a000000-0000-4000-8000-000000000001", "name": "web", "project_id": "p1", "user_id": "u1",
        "policy": "anti-affinity", "rules": {}}, 10)
    assert made["name"] == "web" and database.run_sync(server_groups.count, "p1", write=False) == 1


def _cell_head_has_block_device_mappings(database: Database) -> None:
    from kilonova.compute.db import block_devices

    # 0005: the servers of the old release have no volumes, and the table takes a server's first one.
    assert database.run_sync(block_devices.for_instance, SHELVED, write=False) == []
    made = database.run_sync(block_devices.reserve, SHELVED, {"volume_id": "0c000000-0000-4000-8000-000000000001"})
    assert made["device_name"] == "/dev/vdb" and made["status"] == "attaching"
    # 0006: the old release's compute node reports no stats, NUMA cells or PCI devices yet.
    with database.engine.connect() as connection:
        node = connection.execute(sa.text("SELECT stats, numa_topology, pci_stats FROM compute_nodes")).one()
    assert tuple(node) == ("{}", None, None)


def _placement_head_has_usage_serials(database: Database) -> None:
    with database.engine.connect() as connection:
        serial = connection.execute(sa.text("SELECT usage_serial FROM resource_providers WHERE id = 1")).scalar()
    assert serial == 0


def _identity_head_counts_failed_logins(database: Database) -> None:
    with database.engine.connect() as connection:
        user = connection.execute(sa.text(
            "SELECT failed_auth_count, failed_auth_at, password_hash FROM users WHERE id = 'u1'")).one()
    # 0002: no wrong password counted yet, and the old release's hash still logs alice in.
    assert (user.failed_auth_count, user.failed_auth_at) == (0, None)
    assert passwords.verify_password("old-secret", user.password_hash)


def _network_head_has_routers_floating_ips_and_security_groups(database: Database) -> None:
    from kilonova.network.db import ports, routers, security_groups, usage

    # 0002: no router or floating IP exists yet; the old release's port counts for its project.
    assert database.run_sync(routers.list_routers, None, {}, write=False) == []
    assert database.run_sync(usage.counts, "p1", write=False) == {
        "network": 1, "subnet": 1, "port": 1, "router": 0, "floatingip": 0, "security_group": 0,
        "security_group_rule": 0}
    # 0003: a port of the old release is in no group; its project's default group appears on first use.
    assert database.run_sync(ports.get, PORT, write=False)["security_groups"] == []
    default = database.run_sync(security_groups.ensure_default, "p1")
    assert len(database.run_sync(security_groups.get_group, default, write=False)["security_group_rules"]) == 4


def _volume_head_records_volume_sources(database: Database) -> None:
    # 0003: a volume of the old release was made from nothing: no snapshot, no source volume.
    with database.engine.connect() as connection:
        row = connection.execute(sa.text("SELECT snapshot_id, source_volid, multiattach, attach_status, readonly, "
                                         "extend_new_size FROM volumes")).one()
        attachments = connection.execute(sa.text("SELECT count(*) FROM volume_attachments")).scalar()
        image = connection.execute(sa.text("SELECT count(*) FROM volume_glance_metadata")).scalar()
        snapshot_metadata = connection.execute(sa.text("SELECT count(*) FROM snapshot_metadata")).scalar()
    # 0004: nor is it multiattach or attached anywhere; 0005: nor read-only, nor made from an image;
    # 0006: no snapshot has metadata; 0007: no extend waits for a compute host.
    assert tuple(row) == (None, None, False, "detached", False, None)
    assert attachments == image == snapshot_metadata == 0


# What each store's head adds, checked on the upgraded database.
AT_HEAD = {"nova_api": _api_head_has_server_groups, "cell": _cell_head_has_block_device_mappings,
           "placement": _placement_head_has_usage_serials, "identity": _identity_head_counts_failed_logins,
           "network": _network_head_has_routers_floating_ips_and_security_groups,
           "volume": _volume_head_records_volume_sources}


def _revisions(migrations: str) -> list[str]:
    """Oldest first."""
    from alembic.script import ScriptDirectory

    return [script.revision for script in reversed(list(ScriptDirectory(str(ROOT / migrations)).walk_revisions()))]


def _columns_of(table: sa.Table, row: dict) -> sa.TableClause:
    """Only the columns in ``row``, typed as the model types them (no model defaults for newer columns)."""
    return sa.table(table.name, *(sa.column(name, table.c[name].type) for name in row))


@pytest.fixture(scope="module", params=["sqlite", "postgresql", "mysql"])
def new_url(request, tmp_path_factory):
    """A factory of URLs of new, empty databases on one kind of server."""
    if request.param == "sqlite":
        root = tmp_path_factory.mktemp("sqlite")
        yield lambda name: f"sqlite:///{root}/{name}-{uuid.uuid4().hex[:6]}.sqlite"
        return
    databases = Databases(request.param)
    yield lambda name: databases.url(f"{name}_{uuid.uuid4().hex[:6]}")
    databases.drop_all()


def test_every_store_with_several_revisions_has_an_upgrade_test():
    several = {store for store, (migrations, _base) in STORES.items() if len(_revisions(migrations)) > 1}
    assert several == set(PREVIOUS_RELEASE_ROWS) == set(AT_HEAD)


@pytest.mark.parametrize("store", sorted(PREVIOUS_RELEASE_ROWS))
def test_a_previous_release_database_upgrades_and_keeps_its_data(new_url, store):
    migrations, base = STORES[store]
    metadata = _metadata(base)
    database = Database(new_url(store), name=store, workers=1)
    rows = PREVIOUS_RELEASE_ROWS[store]
    try:
        migrate(database, ROOT / migrations, metadata, revision=_revisions(migrations)[-2])
        with database.engine.begin() as connection:
            for name, table_rows in rows.items():
                connection.execute(sa.insert(_columns_of(metadata.tables[name], table_rows[0])), table_rows)
        migrate(database, ROOT / migrations, metadata)
        with database.engine.connect() as connection:
            for name, table_rows in rows.items():
                columns = _columns_of(metadata.tables[name], table_rows[0])
                kept = [dict(r._mapping) for r in connection.execute(sa.select(columns).order_by(columns.c.id))]
                assert kept == table_rows, name
        AT_HEAD[store](database)
        assert schema_differences(database, metadata) == []  # the same schema as a fresh database's
    finally:
        database.close()


# ---------------------------------------------------------------------------- processes starting together

CELL_STORE = STORES["cell"]


def test_migrations_started_together_run_once_and_both_succeed(new_url):
    url = new_url("racing")
    racers = [Database(url, name=f"racer{i}", workers=1) for i in range(2)]  # two engines, like two processes
    barrier = threading.Barrier(len(racers))
    metadata = _metadata(CELL_STORE[1])

    def start(database: Database) -> None:
        barrier.wait()
        migrate(database, ROOT / CELL_STORE[0], metadata)

    pool = ThreadPoolExecutor(len(racers))
    try:
        for future in [pool.submit(start, database) for database in racers]:
            future.result(timeout=60)
        with racers[0].engine.connect() as connection:
            assert connection.execute(sa.text("SELECT version_num FROM alembic_version")).scalars().all() == [
                _revisions(CELL_STORE[0])[-1]]
        assert schema_differences(racers[0], metadata) == []
    finally:
        pool.shutdown(wait=False)  # without the lock a racer may hang on the other's table locks: fail, not hang
        for database in racers:
            database.close()


def test_a_migration_waits_while_another_process_holds_the_lock(new_url):
    url = new_url("waiting")
    holder, waiter = Database(url, name="holder", workers=1), Database(url, name="waiter", workers=1)
    pool = ThreadPoolExecutor(1)
    try:
        with holder.engine.connect() as connection, migration_lock(connection):
            started = pool.submit(migrate, waiter, ROOT / CELL_STORE[0], _metadata(CELL_STORE[1]))
            with pytest.raises(FutureTimeout):
                started.result(timeout=0.5)
            assert not sa.inspect(holder.engine).has_table("instances")
        assert started.result(timeout=60) is None  # the lock is free: the waiting migration ran
        assert sa.inspect(holder.engine).has_table("instances")
    finally:
        pool.shutdown()
        holder.close()
        waiter.close()


def _cut_own_connection(server, session) -> None:
    """Have the database server drop the connection this session runs on (another connection asks it)."""
    if server.kind == "postgresql":
        pid = session.execute(sa.text("SELECT pg_backend_pid()")).scalar()
        kill = f"SELECT pg_terminate_backend({pid})"
    else:
        pid = session.execute(sa.text("SELECT CONNECTION_ID()")).scalar()
        kill = f"KILL {pid}"
    admin = sa.create_engine(session.bind.engine.url, poolclass=sa.pool.NullPool)
    with admin.connect() as other:
        other.execute(sa.text(kill))
    admin.dispose()


def test_a_transaction_whose_connection_the_server_drops_runs_again(server):
    """A database restart or an administrator cutting connections mid-transaction is not an error for the
    caller: the transaction (rolled back by the server) runs again on a fresh connection, once, and its
    write is there exactly once. Other errors are not retried."""
    database = Database(server.url(f"cut{uuid.uuid4().hex[:6]}"), name="cut")
    try:
        database.run_sync(lambda s: s.execute(sa.text("CREATE TABLE notes (id INTEGER PRIMARY KEY, text VARCHAR(20))")))
        runs = []

        def add_note(session):
            runs.append(1)
            if len(runs) == 1:
                _cut_own_connection(server, session)
            session.execute(sa.text("INSERT INTO notes (id, text) VALUES (1, 'kept')"))
            return len(runs)

        assert database.run_sync(add_note) == 2
        assert database.run_sync(lambda s: s.execute(sa.text("SELECT id, text FROM notes")).all(),
                                 write=False) == [(1, "kept")]

        duplicates = []

        def add_again(session):
            duplicates.append(1)
            session.execute(sa.text("INSERT INTO notes (id, text) VALUES (1, 'twice')"))

        with pytest.raises(sa.exc.IntegrityError):
            database.run_sync(add_again)
        assert len(duplicates) == 1
    finally:
        database.close()
        database.engine.dispose()
