"""`sale`, the command line, as a package: `dispatch` makes the parser, loads the config, runs
the command and maps every error to what the user reads; one module per command group declares
its subcommands next to their handlers (`market`: the stack and its services; `tasks`: publish,
submit, result, run; `log`: replay, audit, report; `security`: keys, contract; `models`: the
local models and the corpora; `evaluation`: the benchmark; `performance`: the load and ingest
measurements); `wiring` is the one place services are built from the config; `arguments` holds
what the groups' flags share."""

from marketplace.app.cli.dispatch import main, parser

__all__ = ["main", "parser"]
