"""The ``query`` scheduler hint, as upstream's JsonFilter (the expression language: ``json_query``)."""
import json

from kilonova.compute.scheduler.filters import BaseFilter
from kilonova.compute.scheduler.filters.json_query import Nothing, QueryError, evaluate, parse


class JsonFilter(BaseFilter):
    """Only hosts for which the ``query`` hint's expression is true."""

    reason = "the query hint is false for it"

    def applies(self, spec):
        return bool((spec.get("scheduler_hints") or {}).get("query"))

    def host_passes(self, host, spec):
        query = (spec.get("scheduler_hints") or {}).get("query")
        if not query:
            return True
        try:
            result = evaluate(parse(query), host)
        except (QueryError, RecursionError):
            return False
        return any(result) if isinstance(result, list) else bool(result)

    def explain(self, spec):
        query = (spec.get("scheduler_hints") or {}).get("query")
        try:
            expression = parse(query)
            evaluate(expression, Nothing())
        except QueryError as exc:
            return str(exc)
        except RecursionError:
            return "the query hint is nested too deeply"
        return f"{self.reason}: {json.dumps(expression)}"
