"""``cfa mcp``: the read and governance tools of cfa over the Model Context Protocol."""
