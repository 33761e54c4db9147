"""``kilonova config-sample``: every option with its help, type, what is allowed and default, from the declarations."""
from __future__ import annotations

import textwrap

from kilonova.config.options import DEFAULTS, MOVED
from kilonova.config.types import Opt


def _describe(opt: Opt) -> str:
    allowed = opt.allowed()
    return f"({opt.kind} value)" if allowed in ("a string", f"a {opt.kind}") else f"({opt.kind} value: {allowed})"


def sample() -> str:
    old_places: dict[tuple[str, str], list[str]] = {}
    for (section, key), new in MOVED.items():
        old_places.setdefault(new, []).append(f"[{section}] {key}")
    lines: list[str] = []
    for section, options in DEFAULTS.items():
        lines.append(f"[{section}]")
        lines.append("")
        for key, opt in options.items():
            for line in textwrap.wrap(f"{opt.help or '(undocumented)'} {_describe(opt)}", 100):
                lines.append(f"# {line}")
            for old in old_places.get((section, key), []):
                lines.append(f"# Deprecated location: {old}")
            lines.append(f"#{key} = {opt.text(opt.default)}")
            lines.append("")
    return "\n".join(lines)
