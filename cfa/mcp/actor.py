"""Who an MCP client acts as: a governance agent named after the client, or (by the operator's
explicit choice) a person.

An assistant connected over MCP ranks as the governance agent (:mod:`cfa.risk.actors`): its
actor string is ``agent:governance:mcp:<client>``, so the control plane holds its overrides to
max_step, cooldown and approval, and it cannot lift what a person halted, froze or overrode.
Only ``cfa mcp --as-person NAME`` makes every call ``person:NAME``.
"""

from __future__ import annotations

import re
from typing import Final

_UNSAFE: Final = re.compile(r"[^A-Za-z0-9_.-]+")
MAX_CLIENT_NAME: Final = 64
"""Longest client name kept in an actor string (characters)."""
PREFIX: Final = "agent:governance:mcp:"


def sanitize_client(name: str | None) -> str:
    """``name`` reduced to ``[A-Za-z0-9_.-]`` (every other run of characters becomes ``_``,
    leading/trailing ``_`` dropped, at most :data:`MAX_CLIENT_NAME` characters); ``unknown``
    when nothing is left."""
    cleaned = _UNSAFE.sub("_", name or "").strip("_")[:MAX_CLIENT_NAME]
    return cleaned or "unknown"


def agent_actor(client: str | None) -> str:
    """The actor string of an MCP client: ``agent:governance:mcp:<sanitised client>``."""
    return PREFIX + sanitize_client(client)


class ActorPolicy:
    """How the server names the actor of each call.

    ``client``: the operator's ``--client`` (overrides what the client says in its
    initialize handshake); ``as_person``: ``--as-person NAME``, every call then acts as
    ``person:NAME``."""

    def __init__(self, client: str | None = None, as_person: str | None = None) -> None:
        if as_person is not None and not as_person.strip():
            raise ValueError("--as-person: give a name")
        self.client = None if client is None else sanitize_client(client)
        self.as_person = None if as_person is None else as_person.strip()

    def actor(self, handshake_name: str | None) -> str:
        """The actor string for a call from a client that named itself ``handshake_name`` in
        its MCP ``initialize`` (clientInfo.name; None when it gave none)."""
        if self.as_person is not None:
            from cfa.desk import person

            return person(self.as_person)
        return agent_actor(self.client if self.client is not None else handshake_name)
