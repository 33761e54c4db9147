"""Cinder's default policy on the shared engine (kilonova/common/policy.py): a project's members use its
volumes, readers only look, admins do everything (and see every project's volumes when they ask with
``all_tenants``); volume types and quotas are admins'. Every rule can be overridden in the policy file.

Another project's volume is "not found" (``check_visible``) before any rule is asked, as upstream.
"""
from __future__ import annotations

from kilonova.common import policy
from kilonova.common.context import RequestContext
from kilonova.common.policy import RuleDefault
from kilonova.volume.errors import policy_denied, volume_not_found

ADMIN = "rule:admin_api"
READER = "rule:project_reader_or_admin"
MEMBER = "rule:project_member_or_admin"

BASE = [
    RuleDefault("context_is_admin", "role:admin", "Decides what is required for the 'is_admin:True' check."),
    RuleDefault("admin_api", "rule:context_is_admin", "Default rule for administrative APIs."),
    RuleDefault("project_reader", "role:reader and project_id:%(project_id)s", "A reader of the project."),
    RuleDefault("project_member", "role:member and project_id:%(project_id)s", "A member of the project."),
    RuleDefault("project_reader_or_admin", "rule:project_reader or rule:context_is_admin", "Reads."),
    RuleDefault("project_member_or_admin", "rule:project_member or rule:context_is_admin", "Writes."),
]
_READS = ["volume:get_volume_summary", "volume:get_all", "volume:get", "message:get_all", "message:get",
          "volume:get_volume_metadata", "volume:get_snapshot_metadata", "volume:get_all_snapshots",
          "volume:get_snapshot", "volume:attachment_get_all", "volume:attachment_get",
          "volume:availability_zone_list", "volume_extension:volume_image_metadata:show"]
_WRITES = ["volume:create", "volume:update", "volume:delete", "volume:extend", "volume:retype", "message:delete",
           "volume:update_volume_metadata", "volume:delete_volume_metadata", "volume:update_snapshot_metadata",
           "volume:delete_snapshot_metadata", "volume:create_snapshot", "volume:update_snapshot",
           "volume:delete_snapshot", "volume:update_readonly_flag", "volume:attachment_create",
           "volume:attachment_update", "volume:attachment_complete", "volume:attachment_delete",
           "volume_extension:volume_image_metadata:set", "volume_extension:volume_image_metadata:remove"] + [
    f"volume_extension:volume_actions:{name}" for name in (
        "set_bootable", "initialize_connection", "terminate_connection", "attach", "detach", "upload_image",
        "reserve", "unreserve", "begin_detaching", "roll_detaching")]
_ADMIN = ["volume:force_delete", "volume:extend_volume_completion",
          "snapshot_extension:snapshot_actions:update_snapshot_status", "volume_extension:quotas:update", "volume_extension:quotas:delete",
          "volume_extension:volume_admin_actions:force_delete", "volume_extension:volume_admin_actions:reset_status",
          "volume_extension:types_manage", "volume_extension:types_extra_specs:create",
          "volume_extension:types_extra_specs:update", "volume_extension:types_extra_specs:delete"]

RULES = BASE + [RuleDefault(name, check, name, scope_types=["project"])
                for check, names in ((READER, _READS), (MEMBER, _WRITES), (ADMIN, _ADMIN)) for name in names]


def _check(ctx: RequestContext, action: str) -> None:
    if not policy.service_enforcer("volume").authorize(action, {"project_id": ctx.project_id}, ctx):
        raise policy_denied(action)


def check_visible(ctx: RequestContext, volume: dict) -> None:
    if not ctx.is_admin and volume["project_id"] != ctx.project_id:
        raise volume_not_found(volume["id"])


# Each handler says what kind of rule it asks (the rule's default says it too; an override decides).
check_read = check_write = check_admin = _check


def check_project(ctx: RequestContext, project_id: str, action: str) -> None:
    """The URL's project must be the token's (an admin may name any)."""
    if not ctx.is_admin and project_id != ctx.project_id:
        raise policy_denied(action)
