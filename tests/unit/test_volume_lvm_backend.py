"""The LVM thin backend's use of the LVM tools (kilonova/volume/lvm.py), against a stand-in for ``lvm`` that
keeps the logical volumes of one volume group: which commands make, copy, grow and remove volumes and
snapshots, what the pool's capacity is, and the refusals at start. (tests/functional/test_volumes_lvm.py runs
the same backend for real on a loop device where the kernel has device-mapper.)"""
from __future__ import annotations

import pytest

from kilonova.config import ConfigError
from kilonova.volume import lvm as lvm_mod
from kilonova.volume.backend import GIB, FileBackend
from kilonova.volume.lvm import LvmError, LvmThinBackend


class FakeLvm:
    """Logical volumes of group ``vg``: name -> {"size": bytes, "attr": lv_attr, "origin": name}."""

    def __init__(self, pool_attr: str = "twi-a-tz--"):
        self.lvs = {"vg-pool": {"size": 10 * GIB, "attr": pool_attr, "data_percent": "25.00"}}
        self.calls: list[tuple[str, ...]] = []

    def __call__(self, *args: str) -> str:
        self.calls.append(args)
        command, target = args[0], args[-1]
        name = target.split("/", 1)[1]
        if command == "lvs":
            if name not in self.lvs:
                raise LvmError(f'lvm lvs failed: Failed to find logical volume "{target}"')
            lv, fields = self.lvs[name], args[args.index("-o") + 1].split(",")
            values = {"lv_size": str(lv["size"]), "lv_attr": lv["attr"], "lv_name": name,
                      "data_percent": lv.get("data_percent", "")}
            return "  " + " ".join(values[f] for f in fields) + "\n"
        new = args[args.index("--name") + 1] if "--name" in args else None
        if command == "lvcreate" and "--thin" in args:
            self.lvs[new] = {"size": int(args[args.index("--virtualsize") + 1][:-1]) * GIB, "attr": "Vwi-a-tz--"}
        elif command == "lvcreate" and "--snapshot" in args:
            self.lvs[new] = {**self.lvs[name], "origin": name,
                             "attr": "Vwi-a-tz--" if "--activate" in args else "Vwi---tz-k"}
        elif command == "lvextend":
            self.lvs[name]["size"] = int(args[args.index("--size") + 1][:-1]) * GIB
        elif command == "lvremove":
            del self.lvs[name]
        return ""


@pytest.fixture
def fake(monkeypatch):
    tools = FakeLvm()
    monkeypatch.setattr(lvm_mod, "lvm", tools)
    return tools


def test_volumes_snapshots_and_copies_are_thin_volumes_named_as_cinder_names_them(fake, tmp_path):
    backend = LvmThinBackend(str(tmp_path / "scratch"), "vg")
    backend.prepare()
    backend.create("v1", 1)
    assert fake.calls[-1] == ("lvcreate", "--yes", "--thin", "--virtualsize", "1g", "--name", "volume-v1",
                              "vg/vg-pool")
    assert str(backend.path("v1")) == "/dev/vg/volume-v1" and backend.size_gb("v1") == 1
    backend.extend("v1", 3)
    assert backend.size_gb("v1") == 3
    backend.snapshot("v1", "s1")
    assert fake.lvs["_snapshot-s1"]["origin"] == "volume-v1" and str(backend.snapshot_path("s1")) == \
        "/dev/vg/_snapshot-s1"
    # From the snapshot: a writable, active thin snapshot of it, grown to the size asked.
    backend.create_from(backend.snapshot_path("s1"), "v2", 5)
    assert fake.lvs["volume-v2"]["origin"] == "_snapshot-s1" and fake.lvs["volume-v2"]["attr"][4] == "a"
    assert backend.size_gb("v2") == 5
    backend.create_from(backend.path("v1"), "v3", 3)   # a clone of the same size is not extended
    assert fake.lvs["volume-v3"]["origin"] == "volume-v1" and fake.calls[-1][0] == "lvs"
    # Removed (a volume before its snapshot, as thin snapshots allow), and removing again is no error.
    backend.delete("v1")
    backend.delete("v1")
    backend.delete_snapshot("s1")
    assert sorted(fake.lvs) == ["vg-pool", "volume-v2", "volume-v3"] and backend.size_gb("v1") is None


def test_the_capacity_is_the_pool_less_what_is_written(fake, tmp_path):
    total, free = LvmThinBackend(str(tmp_path), "vg").capacity_gb()
    assert (total, free) == (10.0, 7.5)


def test_an_image_is_checked_then_written_onto_the_new_volume_device(fake, tmp_path, monkeypatch):
    backend = LvmThinBackend(str(tmp_path), "vg")
    converted = []
    monkeypatch.setattr(FileBackend, "image_format", lambda self, volume_id, size, declared: "qcow2")
    monkeypatch.setattr(lvm_mod, "_qemu_img", lambda *args: converted.append(args) or "")
    backend.write_image("v1", 2, "qcow2")
    assert converted == [("convert", "-q", "-n", "-f", "qcow2", "-O", "raw", str(backend.image_path("v1")),
                          "/dev/vg/volume-v1")]
    assert backend.size_gb("v1") == 2

    def broken(*args):
        raise OSError("qemu-img convert failed: no space")
    monkeypatch.setattr(lvm_mod, "_qemu_img", broken)
    with pytest.raises(OSError, match="no space"):
        backend.write_image("v2", 2, "qcow2")
    assert "volume-v2" not in fake.lvs   # no half-written volume left in the pool


def test_the_service_refuses_a_group_without_its_thin_pool_and_an_unknown_backend(monkeypatch, tmp_path):
    monkeypatch.setattr(lvm_mod, "lvm", FakeLvm())
    with pytest.raises(LvmError, match="has no thin pool 'other-pool'"):
        LvmThinBackend(str(tmp_path), "other").prepare()
    monkeypatch.setattr(lvm_mod, "lvm", FakeLvm(pool_attr="-wi-a-----"))
    with pytest.raises(LvmError, match="is not a thin pool"):
        LvmThinBackend(str(tmp_path), "vg").prepare()
    from kilonova.volume.service import make_backend

    class Conf:
        def __init__(self, backend):
            self.values = {"backend": backend, "volumes_dir": str(tmp_path), "volume_group": "vg",
                           "volume_format": "raw"}

        def get(self, section, option):
            return self.values[option]

    assert type(make_backend(Conf("file"))) is FileBackend
    assert isinstance(make_backend(Conf("LVM")), LvmThinBackend)
    with pytest.raises(ConfigError, match="'ceph' is not a volume backend"):
        make_backend(Conf("ceph"))


def test_the_lvm_tools_missing_is_said_plainly(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(LvmError, match="not installed"):
        lvm_mod.lvm("lvs")
