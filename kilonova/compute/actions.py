"""The one table of server actions, read by the compute API, the conductor and the compute agents.

For every action: the vm_states and task_states it may start from (upstream's
``check_instance_state``), the task state it sets when it starts, the instance action it records
(``os-instance-actions``), where it goes (the server's compute host or the conductor) and by which
RPC method, and -- for the actions a compute agent finishes with one driver call -- that call and
the vm_state and power state the server ends in.

The API refuses an action whose state rule does not hold with upstream's 409 (``conflict_message``);
the state change itself is a compare-and-set on these same states, so of two racing actions one
starts. The agent looks up what to do and what to record here instead of keeping its own copy.
"""
from __future__ import annotations

from dataclasses import dataclass

from kilonova.compute.virt import driver as power

ANY = None  # a rule that does not look at that state


@dataclass(frozen=True)
class Action:
    key: str                        # the body key of POST /servers/{id}/action ("resize", "os-stop", ...)
    name: str                       # the word in upstream's 409 and policy messages ("resize", "stop", ...)
    vm_states: tuple | None         # vm_states it may start from (ANY: every one)
    task_state: str | None          # the task state it sets when it starts (None: it sets none)
    rpc_method: str | None          # the method it casts or calls
    target: str = "compute"         # "compute" (the server's host) or "conductor"
    task_states: tuple | None = (None,)  # task states it may start from (ANY: every one)
    instance_action: str | None = None   # what os-instance-actions records (None: nothing)
    # (who may start it: its upstream rule in kilonova/compute/policies.py ACTION_RULES)
    lock_checked: bool = True       # refused to non-admins while the server is locked (upstream's check_instance_lock)
    # Done by one driver call on the agent: the call, and the vm_state / power state afterwards.
    driver_method: str | None = None
    vm_state_after: str | None = None
    power_state_after: int | None = None

    def allows(self, vm_state: str, task_state: str | None) -> bool:
        return (self.vm_states is ANY or vm_state in self.vm_states) and \
            (self.task_states is ANY or task_state in self.task_states)

    def conflict_message(self, uuid: str, vm_state: str, task_state: str | None) -> str:
        """Upstream's message for a server in a state this action may not start from."""
        if self.task_states is not ANY and task_state not in self.task_states:
            return f"Cannot '{self.name}' instance {uuid} while it is in task_state {task_state}"
        return f"Cannot '{self.name}' instance {uuid} while it is in vm_state {vm_state}"


_RUNNING_LIKE = ("active", "stopped", "paused", "suspended")
# Where upstream attaches and detaches volumes (the shelved ones from microversion 2.20).
_VOLUME_STATES = ("active", "paused", "stopped", "resized", "soft-delete", "shelved", "shelved_offloaded")

_TABLE = (
    # power actions: one driver call on the server's host
    Action("os-start", "start", ("stopped",), "powering-on", "start_instance", instance_action="start",
           driver_method="power_on", vm_state_after="active", power_state_after=power.RUNNING),
    Action("os-stop", "stop", ("active", "error", "paused", "suspended", "rescued"), "powering-off",
           "stop_instance", instance_action="stop",
           driver_method="power_off", vm_state_after="stopped", power_state_after=power.SHUTDOWN),
    Action("pause", "pause", ("active",), "pausing", "pause_instance", instance_action="pause",
           driver_method="pause", vm_state_after="paused", power_state_after=power.PAUSED),
    Action("unpause", "unpause", ("paused",), "unpausing", "unpause_instance", instance_action="unpause",
           driver_method="unpause", vm_state_after="active", power_state_after=power.RUNNING),
    Action("suspend", "suspend", ("active",), "suspending", "suspend_instance", instance_action="suspend",
           driver_method="suspend", vm_state_after="suspended", power_state_after=power.SUSPENDED),
    Action("resume", "resume", ("suspended",), "resuming", "resume_instance", instance_action="resume",
           driver_method="resume", vm_state_after="active", power_state_after=power.RUNNING),
    # reboot: soft from ACTIVE only, hard from more states (the API picks the row by the body's type)
    Action("reboot", "reboot", ("active",), "rebooting", "reboot_instance", instance_action="reboot"),
    Action("reboot-hard", "reboot", ("active", "stopped", "paused", "suspended", "error"), "rebooting_hard",
           "reboot_instance", instance_action="reboot"),
    Action("createImage", "createImage", _RUNNING_LIKE, "image_snapshot_pending", "snapshot_instance",
           instance_action="createImage", lock_checked=False),
    Action("createBackup", "createBackup", _RUNNING_LIKE, "image_backup", "backup_instance",
           instance_action="createBackup", lock_checked=False),
    # moves
    Action("resize", "resize", ("active", "stopped"), "resize_prep", "migrate_server", target="conductor",
           instance_action="resize"),
    Action("migrate", "migrate", ("active", "stopped"), "resize_prep", "migrate_server", target="conductor",
           instance_action="migrate"),
    Action("confirmResize", "confirmResize", ("resized",), None, "confirm_resize", instance_action="confirmResize"),
    Action("revertResize", "revertResize", ("resized",), "resize_reverting", "revert_resize",
           instance_action="revertResize"),
    Action("os-migrateLive", "os-migrateLive", ("active", "paused"), "migrating", "live_migrate_instance",
           target="conductor", instance_action="live-migration"),
    # no task under way either: upstream's check_instance_state default (task_state None)
    Action("evacuate", "evacuate", ("active", "stopped", "error"), "rebuilding", "rebuild_instance",
           target="conductor", instance_action="evacuate"),
    Action("rebuild", "rebuild", ("active", "stopped", "error"), "rebuilding", "rebuild_instance",
           target="conductor", instance_action="rebuild"),
    # shelving
    Action("shelve", "shelve", _RUNNING_LIKE, "shelving", "shelve_instance", instance_action="shelve"),
    Action("shelveOffload", "shelveOffload", ("shelved",), "shelving_offloading", "shelve_offload_instance",
           instance_action="shelveOffload"),
    Action("unshelve", "unshelve", ("shelved", "shelved_offloaded"), "unshelving", "unshelve_instance",
           target="conductor", instance_action="unshelve"),
    # rescue and friends
    Action("rescue", "rescue", ("active", "stopped", "error"), "rescuing", "rescue_instance",
           instance_action="rescue"),
    Action("unrescue", "unrescue", ("rescued",), "unrescuing", "unrescue_instance", instance_action="unrescue"),
    Action("changePassword", "changePassword", ("active",), "updating_password", "set_admin_password",
           instance_action="changePassword"),
    Action("trigger_crash_dump", "trigger_crash_dump", ("active", "paused", "rescued", "resized", "error"), None,
           "trigger_crash_dump", instance_action="trigger_crash_dump"),
    # upstream records no instance action for injectNetworkInfo; resetState records "resetState"
    Action("injectNetworkInfo", "injectNetworkInfo", ANY, None, "inject_network_info", task_states=ANY),
    Action("os-resetState", "os-resetState", ANY, None, None, task_states=ANY, instance_action="resetState"),
    # soft delete
    Action("restore", "restore", ("soft-delete",), "restoring", "restore_instance", instance_action="restore"),
    # port interfaces (os-interface): no task state, as upstream's attach_interface / detach_interface
    Action("attach_interface", "attach_interface", ("active", "paused", "stopped"), None, "attach_interface",
           instance_action="attach_interface"),
    Action("detach_interface", "detach_interface", ("active", "paused", "stopped"), None, "detach_interface",
           instance_action="detach_interface"),
    # volumes (os-volume_attachments): no task state, as upstream's attach_volume / detach_volume / swap_volume
    Action("attach_volume", "attach_volume", _VOLUME_STATES, None, "attach_volume", instance_action="attach_volume"),
    Action("detach_volume", "detach_volume", _VOLUME_STATES, None, "detach_volume", instance_action="detach_volume"),
    Action("swap_volume", "swap_volume", ("active", "paused", "resized"), None, "swap_volume",
           instance_action="swap_volume"),
    # a force delete is a delete (upstream records "delete"): the delete path records it
    Action("forceDelete", "forceDelete", ANY, "deleting", "terminate_instance", task_states=ANY),
)

ACTIONS: dict[str, Action] = {action.key: action for action in _TABLE}
# The actions a compute agent finishes with one driver call, by their RPC method.
BY_RPC_METHOD: dict[str, Action] = {a.rpc_method: a for a in _TABLE if a.driver_method and a.target == "compute"}


def get(key: str) -> Action:
    return ACTIONS[key]
