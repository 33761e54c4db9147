"""Option declarations: a type, what is allowed, a default and help text, checked when a value is set.

Each option type turns the text of an INI value into a Python value, or raises ``ValueError`` with what
is allowed; the configuration keeps the text (readers convert it with ``Config.getint`` & co., which
cannot fail once the text passed here).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable

TRUE = ("1", "true", "yes", "on")
FALSE = ("0", "false", "no", "off")


@dataclass
class Opt:
    """A string option: free text unless ``choices`` or ``pattern`` narrow it."""

    default: object = ""
    help: str = ""
    choices: tuple[str, ...] | None = None
    pattern: str | None = None           # a regular expression the whole value must match
    pattern_help: str = ""               # what the pattern means, for errors and config-sample
    secret: bool = False                 # never printed (config-sample, errors)
    check: Callable[[str], None] | None = None   # more than a pattern can say: raises ValueError(what is allowed)
    kind: str = field(default="string", init=False)

    def parse(self, text: str) -> object:
        text = text.strip()
        if self.choices is not None and text not in self.choices:
            raise ValueError(self.allowed())
        if self.pattern and text and not re.fullmatch(self.pattern, text):
            raise ValueError(self.allowed())
        if self.check is not None and text:
            self.check(text)
        return text

    def allowed(self) -> str:
        """What a value may be, in a few words (errors and config-sample)."""
        if self.choices is not None:
            return "one of " + ", ".join(repr(c) if c == "" else c for c in self.choices)
        if self.pattern_help:
            return self.pattern_help
        return "a string"

    def text(self, value: object) -> str:
        """The INI text of a Python value (defaults are declared as Python values)."""
        return str(value)


@dataclass
class Str(Opt):
    pass


@dataclass
class Bool(Opt):
    default: object = False
    kind: str = field(default="boolean", init=False)

    def parse(self, text: str) -> bool:
        lowered = text.strip().lower()
        if lowered in TRUE:
            return True
        if lowered in FALSE:
            return False
        raise ValueError(self.allowed())

    def allowed(self) -> str:
        return "true or false"

    def text(self, value: object) -> str:
        return "true" if value else "false"


@dataclass
class Int(Opt):
    default: object = 0
    min: int | None = None
    max: int | None = None
    optional: bool = False               # empty text allowed: not set
    kind: str = field(default="integer", init=False)

    def parse(self, text: str) -> int | None:
        if self.optional and not text.strip():
            return None
        try:
            value = int(text.strip())
        except ValueError:
            raise ValueError(self.allowed()) from None
        if (self.min is not None and value < self.min) or (self.max is not None and value > self.max):
            raise ValueError(self.allowed())
        return value

    def allowed(self) -> str:
        return _range("an integer", self.min, self.max) + (", or empty" if self.optional else "")

    def text(self, value: object) -> str:
        return "" if value is None else str(value)


@dataclass
class Port(Int):
    min: int | None = 0
    max: int | None = 65535
    kind: str = field(default="port", init=False)


@dataclass
class Float(Opt):
    default: object = 0.0
    min: float | None = None
    max: float | None = None
    kind: str = field(default="floating point", init=False)

    def parse(self, text: str) -> float:
        try:
            value = float(text.strip())
        except ValueError:
            raise ValueError(self.allowed()) from None
        if value != value or (self.min is not None and value < self.min) or \
                (self.max is not None and value > self.max):
            raise ValueError(self.allowed())
        return value

    def allowed(self) -> str:
        return _range("a number", self.min, self.max)


@dataclass
class List(Opt):
    """Comma-separated items; with ``choices``, every item must be one of them."""

    default: object = ()
    kind: str = field(default="list", init=False)

    def parse(self, text: str) -> list[str]:
        items = [item.strip() for item in text.split(",") if item.strip()]
        for item in items:
            if self.choices is not None and item not in self.choices:
                raise ValueError(self.allowed())
            if self.pattern and not re.fullmatch(self.pattern, item):
                raise ValueError(self.allowed())
        return items

    def allowed(self) -> str:
        if self.choices is not None:
            return "a comma-separated list of " + ", ".join(self.choices)
        return "a comma-separated list" + (f" of {self.pattern_help}" if self.pattern_help else "")

    def text(self, value: object) -> str:
        return value if isinstance(value, str) else ",".join(value)


def _range(what: str, low, high) -> str:
    if low is not None and high is not None:
        return f"{what} from {low} to {high}"
    if low is not None:
        return f"{what} >= {low}"
    if high is not None:
        return f"{what} <= {high}"
    return what
