"""Filters that read the metadata of a host's aggregates (``openstack aggregate set --property``).

A host's aggregate metadata is ``key -> values`` over all its aggregates, comma-separated values split,
as upstream's ``aggregate_metadata_get_by_host``.
"""
from kilonova.compute.scheduler.filters import BaseFilter
from kilonova.compute.scheduler.filters.extra_specs_ops import match

SCOPE = "aggregate_instance_extra_specs"


class AggregateFilter(BaseFilter):
    needs_aggregates = True


class AggregateInstanceExtraSpecsFilter(AggregateFilter):
    """Only hosts whose aggregates' metadata match every flavor extra spec that is unscoped or scoped
    ``aggregate_instance_extra_specs:`` (a value may carry an operator: ``>= 4``, ``<or> a <or> b``)."""

    reason = "its aggregates' metadata do not match the flavor's extra specs"

    def applies(self, spec):
        return any(True for _ in _scoped_specs(spec))

    def host_passes(self, host, spec):
        for key, wanted in _scoped_specs(spec):
            if not any(match(value, wanted) for value in host.aggregates.get(key, ())):
                return False
        return True

    def explain(self, spec):
        wanted = ", ".join(f"{key}={value}" for key, value in _scoped_specs(spec))
        return f"{self.reason} ({wanted})"


def _scoped_specs(spec):
    for key, wanted in ((spec.get("flavor") or {}).get("extra_specs") or {}).items():
        scope, _, name = key.partition(":")
        if not name:
            yield key, wanted
        elif scope == SCOPE:
            yield name, wanted


class AggregateMultiTenancyIsolation(AggregateFilter):
    """Hosts in aggregates with ``filter_tenant_id*`` metadata take only the projects it lists."""

    reason = "its aggregates are kept for other projects (filter_tenant_id)"

    def host_passes(self, host, spec):
        allowed = set().union(*(values for key, values in host.aggregates.items()
                                if key.startswith("filter_tenant_id")))
        return not allowed or spec.get("project_id") in allowed

    def explain(self, spec):
        return f"{self.reason}; project {spec.get('project_id')} is not among them"


class AggregateImagePropertiesIsolation(AggregateFilter):
    """Hosts whose aggregates set a key that the image also sets as a property take only images whose
    property has one of the aggregate's values (keys limited to
    ``aggregate_image_properties_isolation_namespace`` + separator when that is set)."""

    run_on_rebuild = True
    reason = "its aggregates' metadata differ from the image's properties"

    def host_passes(self, host, spec):
        props = (spec.get("image") or {}).get("properties") or {}
        prefix = self._prefix()
        for key, values in host.aggregates.items():
            if prefix and not key.startswith(prefix):
                continue
            prop = props.get(key)
            if prop and str(prop) not in values:
                return False
        return True

    def _prefix(self):
        namespace = self.conf.get("filter_scheduler", "aggregate_image_properties_isolation_namespace")
        separator = self.conf.get("filter_scheduler", "aggregate_image_properties_isolation_separator")
        return namespace + separator if namespace else ""
