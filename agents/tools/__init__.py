"""Tools an agent may call while it works on a task (search: `agents.tools.search`)."""
