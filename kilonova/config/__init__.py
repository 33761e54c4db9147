"""One INI configuration file, nova.conf style, with a checked default for every option.

No file is needed for the all-in-one: every option has a default, and the state directory decides where
the SQLite databases, keys and images live. Every option is declared once, with its type and what is
allowed, in ``options.py``; ``Config.load`` refuses an unknown section or option and a wrong value with one
line naming them, so a start fails at once instead of the first request that reads the value.
"""
from __future__ import annotations

import configparser
import difflib
import logging
import os
import socket
from pathlib import Path

import platformdirs

from kilonova.config.options import DEFAULTS, MOVED
from kilonova.config.types import Opt

LOG = logging.getLogger(__name__)
# configparser's DEFAULT section would leak into every other section's options; nova.conf's [DEFAULT] is a
# section like the others here.
_NO_FALLBACK_SECTION = "\x00none"


def default_state_dir() -> Path:
    return Path(platformdirs.user_data_dir("kilonova"))


class ConfigError(ValueError):
    """A configuration value that cannot work; the command line prints it as one line and exits 2."""


class UnknownOption(configparser.NoOptionError):
    """A reader asked for an option no section declares (a programming error, not an operator's)."""


def option(section: str, key: str) -> Opt:
    """The declaration of ``[section] key`` (at its new place when it moved)."""
    section, key = MOVED.get((section, key), (section, key))
    try:
        return DEFAULTS[section][key]
    except KeyError:
        raise UnknownOption(key, section) from None


def _suggest(word: str, candidates) -> str:
    by_lower = {candidate.lower(): candidate for candidate in candidates}
    close = difflib.get_close_matches(word.lower(), list(by_lower), n=1, cutoff=0.75)
    return f" (did you mean {by_lower[close[0]]}?)" if close else ""


class Config:
    """The merged defaults + file + overrides: every value checked, read as text or converted."""

    def __init__(self, values: dict[str, dict[str, str]], state_dir: Path, explicit: set[tuple[str, str]]):
        self._values = values
        self._explicit = explicit
        self.state_dir = state_dir

    @classmethod
    def load(cls, path: str | os.PathLike | None = None, state_dir: str | os.PathLike | None = None,
             overrides: dict[str, dict[str, object]] | None = None) -> "Config":
        values = {section: {key: opt.text(opt.default) for key, opt in options.items()}
                  for section, options in DEFAULTS.items()}
        conf = cls(values, Path("."), set())
        given: list[tuple[str, str, str]] = []
        if path:
            given.extend(_read_file(Path(path)))
        for section, options in (overrides or {}).items():
            given.extend((section, key, str(value)) for key, value in options.items())
        moved = []
        for section, key, text in given:
            if (section, key) in MOVED:
                moved.append((section, key, text))
            else:
                conf.set(section, key, text)
        for section, key, text in moved:
            new_section, new_key = MOVED[(section, key)]
            if (new_section, new_key) in conf._explicit:
                LOG.warning("[%s] %s is deprecated and ignored: [%s] %s is set", section, key, new_section, new_key)
                continue
            LOG.warning("[%s] %s is deprecated: set [%s] %s instead", section, key, new_section, new_key)
            conf.set(new_section, new_key, text, source=f"[{section}] {key}")
        chosen = state_dir or values["DEFAULT"]["state_dir"] or os.environ.get("KILONOVA_STATE_DIR")
        conf.state_dir = Path(chosen).expanduser().resolve() if chosen else default_state_dir()
        values["DEFAULT"]["state_dir"] = str(conf.state_dir)
        if not values["DEFAULT"]["host"]:
            values["DEFAULT"]["host"] = socket.gethostname()
        return conf

    def get(self, section: str, key: str) -> str:
        section, key = MOVED.get((section, key), (section, key))
        try:
            value = self._values[section][key]
        except KeyError:
            raise UnknownOption(key, section) from None
        return value.replace("{state_dir}", str(self.state_dir))

    def value(self, section: str, key: str) -> object:
        """The option's value converted by its type (int, float, bool, list of str, str; None if unset)."""
        return option(section, key).parse(self.get(section, key))

    def getint(self, section: str, key: str) -> int:
        return int(self.get(section, key))

    def getfloat(self, section: str, key: str) -> float:
        return float(self.get(section, key))

    def getbool(self, section: str, key: str) -> bool:
        return self.get(section, key).strip().lower() in ("1", "true", "yes", "on")

    def getlist(self, section: str, key: str) -> list[str]:
        return [item.strip() for item in self.get(section, key).split(",") if item.strip()]

    def is_set(self, section: str, key: str) -> bool:
        """Whether the file, an override or ``set`` gave the option a value (else it has its default)."""
        return MOVED.get((section, key), (section, key)) in self._explicit

    def set(self, section: str, key: str, value: object, source: str | None = None) -> None:
        """Set an option, checked as a value from the file is (``ConfigError`` says what is allowed)."""
        section, key = MOVED.get((section, key), (section, key))
        text = str(value)
        where = source or f"[{section}] {key}"
        if section not in DEFAULTS:
            raise ConfigError(f"[{section}]: unknown section{_suggest(section, DEFAULTS)}")
        opt = DEFAULTS[section].get(key)
        if opt is None:
            raise ConfigError(f"[{section}] {key}: unknown option{_suggest(key, DEFAULTS[section])}")
        try:
            opt.parse(text)
        except ValueError as exc:
            shown = "(secret)" if opt.secret else repr(text)
            raise ConfigError(f"{where} = {shown}: must be {exc}") from None
        self._values[section][key] = text
        self._explicit.add((section, key))

    def write(self, path: Path) -> None:
        """The options set explicitly, as an INI file."""
        parser = configparser.ConfigParser(interpolation=None, default_section=_NO_FALLBACK_SECTION)
        for section, key in sorted(self._explicit):
            if not parser.has_section(section):
                parser.add_section(section)
            parser.set(section, key, self._values[section][key])
        with open(path, "w") as fh:
            parser.write(fh)


def _read_file(path: Path) -> list[tuple[str, str, str]]:
    """(section, option, text) of an INI file, or a one-line ``ConfigError`` for a file that cannot be read."""
    if not path.exists():
        raise ConfigError(f"configuration file {path} does not exist")
    parser = configparser.ConfigParser(interpolation=None, default_section=_NO_FALLBACK_SECTION)
    try:
        with open(path) as handle:
            parser.read_file(handle)
    except configparser.Error as exc:
        raise ConfigError(f"{path}: {' '.join(str(exc).split())}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot be read ({exc})") from None
    return [(section, key, text) for section in parser.sections() for key, text in parser.items(section)]
