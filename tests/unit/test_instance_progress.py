"""The server's ``progress`` through a resize's and a snapshot's steps, and back to 0 when they end."""
from __future__ import annotations

import uuid as uuidlib

from kilonova.common.db import Database, migrate
from kilonova.compute import cells
from kilonova.compute.db import instances
from kilonova.compute.db.cell_models import CellBase

FLAVOR = {"flavorid": "1", "name": "m1.tiny", "vcpus": 1, "memory_mb": 512, "root_gb": 1, "ephemeral_gb": 0}


def test_progress_follows_the_steps_of_resizes_and_snapshots_and_not_of_builds(tmp_path):
    db = Database(f"sqlite:///{tmp_path / 'cell.sqlite'}", name="cell-progress")
    migrate(db, cells.CELL_MIGRATIONS, CellBase.metadata)
    uuid = str(uuidlib.uuid4())
    db.run_sync(instances.create, {"uuid": uuid, "project_id": "p", "user_id": "u", "flavor": FLAVOR,
                                   "vm_state": "building", "task_state": "scheduling", "host": None})

    def step(**values):
        return db.run_sync(instances.update, uuid, values)["progress"] or 0

    # A build stays at 0 (upstream's libvirt driver; `server create --wait -f json` prints any other value).
    assert step(task_state="spawning") == 0
    assert step(vm_state="active", task_state=None) == 0
    assert [step(task_state=s) for s in ("resize_prep", "resize_migrating", "resize_migrated", "resize_finish")] \
        == [0, 25, 50, 75]
    assert step(vm_state="resized", task_state=None) == 0
    assert step(vm_state="active", task_state=None) == 0
    assert [step(task_state=s) for s in ("image_snapshot_pending", "image_snapshot", "image_pending_upload",
                                         "image_uploading")] == [0, 25, 50, 75]
    assert step(task_state=None) == 0
    # An explicit progress (a live migration's copy share) is kept as given.
    assert step(task_state="migrating") == 0
    assert step(progress=40) == 40
    assert step(task_state=None) == 0
