"""The ``cfa`` command (typer + rich).

Every command turns the errors a user can cause (bad options, unreadable files, unwritable
paths, unknown names) into one clear line on stderr and a non-zero exit, never a traceback.

Start-up: a command's module is imported only when that command is run (or asked for its own
``--help``), never to list it. ``cfa run`` pulls in statsmodels, scipy, pandas, arch, numpy and
langgraph (seconds of CPU); ``cfa govern halt`` must not pay for them, so the root group below
resolves commands from :data:`COMMANDS` on demand and lists them (``cfa --help``) from the help
strings there. ``tests/test_cli_startup.py`` checks both.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, MutableMapping
from typing import TYPE_CHECKING, Any

import typer
from typer.core import TyperCommand, TyperGroup

if TYPE_CHECKING:
    from typer._click import Command  # typer vendors its own click

COMMANDS: dict[str, tuple[str, str, str]] = {
    "run": ("cfa.cli.run", "run", "Run the agent loop per market (embedded simulator by default)."),
    "report": ("cfa.cli.report", "report", "Write a self-contained HTML report of a run."),
    "eval": (
        "cfa.cli.eval_cmd",
        "eval_suite",
        "Compare strategies over a suite of simulated runs, by seed.",
    ),
    "replay": (
        "cfa.cli.replay",
        "replay",
        "Replay a recorded run offline: exact, decisions or counterfactual.",
    ),
    "markets": (
        "cfa.cli.kalshi_cmds",
        "markets",
        "List Kalshi markets (public data; no key needed).",
    ),
    "record": (
        "cfa.cli.kalshi_cmds",
        "record",
        "Record Kalshi's live WebSocket feed to a file for offline replay.",
    ),
    "govern": (
        "cfa.cli.govern",
        "govern_app",
        "Govern a running session: freeze, override, halt, resume, approve.",
    ),
    "traces": (
        "cfa.cli.traces",
        "traces_app",
        "Review the agents' decisions: list them, or show one with what followed.",
    ),
    "console": ("cfa.cli.console_cmd", "console", "Serve the operator's console in a browser."),
    "mcp": ("cfa.cli.mcp_cmd", "mcp", "Serve cfa's read and governance tools over MCP."),
    "audit": ("cfa.cli.audit_cmds", "audit_app", "Check the audit store (hash chain)."),
}
"""``name -> (module, attribute, help)`` of every top-level command, in ``cfa --help`` order. An
attribute that is a :class:`typer.Typer` is a command group (its own ``help=`` is the one shown
when it runs; the help here is only for the listing and must match it: a test checks)."""


def load_command(name: str) -> Command:
    """Import ``name``'s module and build its click command exactly as an eager typer app would."""
    module, attr, help_text = COMMANDS[name]
    obj = getattr(importlib.import_module(module), attr)
    holder = typer.Typer()
    if isinstance(obj, typer.Typer):
        holder.add_typer(obj, name=name)
    else:
        holder.command(name=name, help=help_text)(obj)
    return typer.main.get_group(holder).commands[name]


class _LazyCommands(MutableMapping[str, "Command"]):
    """``TyperGroup.commands`` that imports a command on first lookup; names never import.

    While :attr:`listing` (the group is formatting its help), a command not yet loaded is given
    as a stub carrying only its name and help.
    """

    def __init__(self, loaded: MutableMapping[str, Command]) -> None:
        self._loaded: dict[str, Command] = dict(loaded)
        self.listing = False

    def __getitem__(self, name: str) -> Command:
        if name in self._loaded:
            return self._loaded[name]
        if name not in COMMANDS:
            raise KeyError(name)
        if self.listing:
            return TyperCommand(name=name, help=COMMANDS[name][2])
        cmd = self._loaded[name] = load_command(name)
        return cmd

    def __contains__(self, name: object) -> bool:
        return name in self._loaded or name in COMMANDS

    def __setitem__(self, name: str, cmd: Command) -> None:
        self._loaded[name] = cmd

    def __delitem__(self, name: str) -> None:
        del self._loaded[name]

    def __iter__(self) -> Iterator[str]:
        return iter(dict.fromkeys([*COMMANDS, *self._loaded]))

    def __len__(self) -> int:
        return len(COMMANDS.keys() | self._loaded.keys())


class LazyGroup(TyperGroup):
    """The root ``cfa`` group: subcommands resolved from :data:`COMMANDS` when used."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.commands = self._lazy = _LazyCommands(self.commands)

    def list_commands(self, ctx: Any) -> list[str]:
        return list(self._lazy)

    def format_help(self, ctx: Any, formatter: Any) -> None:
        self._lazy.listing = True
        try:
            super().format_help(ctx, formatter)
        finally:
            self._lazy.listing = False


app = typer.Typer(
    name="cfa",
    cls=LazyGroup,
    help="Cognitive Financial Agents: LLM-governed Avellaneda-Stoikov market making on Kalshi.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root() -> None:
    """cfa: market-make Kalshi binary contracts with LLM-governed Avellaneda-Stoikov quoting."""


def main() -> None:
    app()
