"""Versions of an RPC interface, and how a newer sender writes for an older receiver.

An interface (compute agent, conductor, scheduler) has a history: its changes,
oldest first, each a version "X.Y", one line saying what changed, and the
methods or arguments it added. A minor version only adds (a method, an
optional argument); a new major is a break. A server serves its target at the
newest version it knows and refuses messages of another major or of a newer
minor (``kilonova.common.rpc.check_version``).

During a rolling upgrade the sender is newer than some receivers: it is
*capped* at the version the receiver speaks and *backports* each message —
the arguments added after the cap are dropped, a method added after it is
not sent at all (``UnsupportedVersion``). Every message is stamped with the
oldest version that can carry it, so a method unchanged since 1.0 reaches a
1.0 receiver whatever the sender's cap.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from kilonova.common.rpc import UnsupportedVersion, parse_version


@dataclass(frozen=True)
class Change:
    version: str
    note: str
    # method -> the optional arguments this version added to it
    arguments: dict[str, tuple[str, ...]] = field(default_factory=dict)
    methods: tuple[str, ...] = ()  # methods this version added


class Interface:
    def __init__(self, name: str, history: list[Change]):
        self.name = name
        self.history = history
        self._parsed = [(parse_version(change.version), change) for change in history]
        self._prepared: dict[tuple, tuple[str, frozenset]] = {}
        assert [v for v, _c in self._parsed] == sorted(v for v, _c in self._parsed), "history is oldest first"

    @property
    def latest(self) -> str:
        return self.history[-1].version

    @property
    def oldest(self) -> str:
        return self.history[0].version

    def cap(self, value: str | None) -> tuple[int, int]:
        """The version to write for: ``value`` ("X.Y"; None or "" = the newest), at most the newest."""
        latest = parse_version(self.latest)
        if not value:
            return latest
        try:
            wanted = parse_version(value)
        except ValueError as exc:
            raise UnsupportedVersion(f"{self.name} RPC version cap {value!r} is not X.Y") from exc
        if wanted[0] != latest[0] or wanted < parse_version(self.oldest):
            raise UnsupportedVersion(f"{self.name} RPC version cap {value} is not one this release speaks "
                                     f"({self.oldest} to {self.latest})")
        return min(wanted, latest)

    def prepare(self, method: str, kwargs: dict, cap: str | None = None) -> tuple[str, dict]:
        """(version to stamp, arguments) of ``method`` for a receiver that speaks at most ``cap``."""
        # Worked out once per method, cap and set of argument names (every message is prepared).
        key = (method, cap, frozenset(kwargs))
        known = self._prepared.get(key)
        if known is None:
            if len(self._prepared) >= 1024:
                self._prepared.clear()
            known = self._prepared[key] = self._stamp(method, kwargs, cap)
        stamp, dropped = known
        return stamp, ({k: v for k, v in kwargs.items() if k not in dropped} if dropped else kwargs)

    def _stamp(self, method: str, kwargs: dict, cap: str | None) -> tuple[str, frozenset]:
        """(version to stamp, names of the arguments to drop) for ``prepare``."""
        limit = self.cap(cap)
        stamp, out = self.oldest, kwargs
        for version, change in self._parsed:
            # A change touches this message when it added the method, or an argument the message carries.
            touched = method in change.methods or any(name in out for name in change.arguments.get(method, ()))
            if version <= limit:
                if touched:
                    stamp = change.version
                continue
            if method in change.methods:
                raise UnsupportedVersion(f"{method} came with {self.name} RPC {change.version}; "
                                         f"the receiver speaks {limit[0]}.{limit[1]}")
            dropped = [name for name in change.arguments.get(method, ()) if name in out]
            if dropped:
                out = {k: v for k, v in out.items() if k not in dropped}
        return stamp, frozenset(kwargs) - frozenset(out)
