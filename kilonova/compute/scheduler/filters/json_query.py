"""The expression language of the ``query`` hint (upstream's JsonFilter): a JSON expression over a host's state.

``["and", [">=", "$free_ram_mb", 1024], ["in", "$hypervisor_type", "fake", "QEMU"]]``: a list is an
operator and its arguments; ``$name`` is a host attribute (``$cpu_info.arch`` reaches into a dict);
an argument that resolves to nothing is dropped, and a comparison left with one argument is false.
"""
import functools
import json
import operator


def _compare(op):
    def run(args):
        if len(args) < 2:
            return False
        if op is operator.contains:
            return args[0] in args[1:]
        return all(op(args[0], other) for other in args[1:])
    return run


_COMMANDS = {"=": _compare(operator.eq), "<": _compare(operator.lt), ">": _compare(operator.gt),
             "in": _compare(operator.contains), "<=": _compare(operator.le), ">=": _compare(operator.ge),
             "not": lambda args: [not arg for arg in args], "or": any, "and": all}


class QueryError(ValueError):
    pass


def parse(query) -> list:
    """The hint's expression (a JSON string, or already an object); QueryError when it is not one."""
    return _parse_text(query) if isinstance(query, str) else _checked(query)


@functools.lru_cache(maxsize=64)   # one request asks for every host: the text is read once
def _parse_text(query: str) -> list:
    try:
        expression = json.loads(query)
    except ValueError as exc:
        raise QueryError(f"the query hint is not JSON ({exc})") from None
    except RecursionError:
        raise QueryError("the query hint is nested too deeply") from None
    return _checked(expression)


def _checked(expression) -> list:
    if not isinstance(expression, list):
        raise QueryError("the query hint is not a JSON list such as [\">=\", \"$free_ram_mb\", 1024]")
    return expression


def evaluate(expression: list, host):
    if not expression:
        return True
    command = _COMMANDS.get(expression[0]) if isinstance(expression[0], str) else None
    if command is None:
        raise QueryError(f"the query hint has an unknown operator {expression[0]!r} (known: {', '.join(_COMMANDS)})")
    args = []
    for arg in expression[1:]:
        if isinstance(arg, list):
            arg = evaluate(arg, host)
        elif isinstance(arg, str) and arg.startswith("$"):
            arg = _variable(arg[1:], host)
        if arg is not None:
            args.append(arg)
    try:
        return command(args)
    except TypeError as exc:   # e.g. a number compared with a string
        raise QueryError(f"the query hint compares values that do not compare ({exc})") from None


def _variable(path: str, host):
    first, *rest = path.split(".")
    value = host.attribute(first)
    for key in rest:
        value = value.get(key) if isinstance(value, dict) else None
        if value is None:
            return None
    return value


class Nothing:
    """A host with no attributes: enough to find an expression's own errors."""

    def attribute(self, name):
        return None
