"""Shorter status polling for the real OpenStack CLIs that the tests run (loaded through PYTHONPATH).

`openstack server create --wait`, `server delete --wait`, `nova boot --poll` and friends check the server,
then sleep 2-5 s before checking again. Against Kilonova's fake hosts a build takes milliseconds, so each
of those commands would spend most of its time asleep. This module only shortens those sleeps (to
``KILONOVA_TEST_CLIENT_POLL`` seconds, default 0.2): the clients still send the same requests and print the
same output. It patches each client module right after that module is first imported, so a CLI that
never waits imports nothing extra.
"""
from __future__ import annotations

import functools
import importlib.abc
import os
import sys

POLL = float(os.environ.get("KILONOVA_TEST_CLIENT_POLL", "0.2"))


def _patch_osc_lib_utils(module) -> None:
    for name in ("wait_for_status", "wait_for_delete"):
        original = getattr(module, name)

        @functools.wraps(original)
        def waiter(*args, _original=original, **kwargs):
            kwargs.setdefault("sleep_time", POLL)
            return _original(*args, **kwargs)

        setattr(module, name, waiter)


def _patch_openstack_utils(module) -> None:
    original = module.iterate_timeout

    @functools.wraps(original)
    def iterate_timeout(timeout, message, wait=2):
        return original(timeout, message, min(float(wait or 2), POLL))

    module.iterate_timeout = iterate_timeout


def _patch_novaclient_shell(module) -> None:
    original = module._poll_for_status

    @functools.wraps(original)
    def poll_for_status(*args, **kwargs):
        kwargs.setdefault("poll_period", POLL)
        return original(*args, **kwargs)

    module._poll_for_status = poll_for_status


_PATCHES = {
    "osc_lib.utils": _patch_osc_lib_utils,
    "openstack.utils": _patch_openstack_utils,
    "novaclient.v2.shell": _patch_novaclient_shell,
}


class _PatchAfterImport(importlib.abc.MetaPathFinder):
    """Finds nothing itself: wraps the real loader of a module in _PATCHES to patch it once executed."""

    def find_spec(self, fullname, path, target=None):
        patch = _PATCHES.get(fullname)
        if patch is None:
            return None
        for finder in sys.meta_path:
            if finder is self:
                continue
            spec = finder.find_spec(fullname, path, target) if hasattr(finder, "find_spec") else None
            if spec is not None and spec.loader is not None:
                original_exec = spec.loader.exec_module

                def exec_module(module, _original=original_exec, _patch=patch):
                    _original(module)
                    _patch(module)

                spec.loader.exec_module = exec_module
                return spec
        return None


sys.meta_path.insert(0, _PatchAfterImport())
