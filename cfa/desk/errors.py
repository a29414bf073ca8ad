"""The one error of the operator's desk."""

from __future__ import annotations


class DeskError(ValueError):
    """What an operator asked for cannot be done, and why, in one line for people (the CLI
    prints it, the console shows it, the MCP server returns it as the tool's error). Nothing was
    written to the audit store when it is raised."""
