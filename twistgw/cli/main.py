"""twistgw: check manifests offline (validate), show what the gateway would make of
them (translate), ask a running gateway how its objects are (status), and list the
filter plugins installed here (plugins)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence

import yaml
from twisted.python import usage

from twistgw.cli import offline, status
from twistgw.cli.printable import printable
from twistgw.extensions.filters import installed_plugins
from twistgw.options import GatewayOptions
from twistgw.translate import Translation

VALIDATE = """Read manifest directories as the gateway would and print every problem: the
file, the object and the field, or the condition that says what is wrong (a missing
Service, a refused reference, a conflicting listener, ...). Exit status 0 only when
there is none: for CI pipelines and pre-commit hooks."""
TRANSLATE = """Run the gateway's translator on manifest directories, offline, and print
every object's status (as the admin endpoint's /status would) and the routing table."""
PLUGINS = """List the filter plugins installed where this runs (what PythonFilters may
name, unless --filter-plugins narrows it), each with its config schema."""
STATUS = """Ask a running gateway's admin endpoint and print its Gateways, their
listeners and the routes attached to them, with conditions, attached-route counts and
addresses. Exit status 1 when something is not Accepted or Programmed (or a
reference is not resolved), 2 when the gateway cannot be asked."""


def _translation_arguments(parser: argparse.ArgumentParser) -> None:
    """The directories, and the gateway's options that change what it makes of them
    (their defaults and help are ``twistd gateway``'s own)."""
    parser.add_argument("directories", nargs="+", metavar="DIR", help="manifest directory")
    for name, _short, default, help_text, *_ in GatewayOptions.optParameters:
        if name in offline.TRANSLATION_OPTIONS:
            shown = f" (default: {default})" if default not in (None, "") else ""
            parser.add_argument(f"--{name}", metavar="VALUE", help=help_text + shown)


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="twistgw", description=__doc__)
    commands = top.add_subparsers(dest="command", required=True, metavar="COMMAND")
    validate = commands.add_parser("validate", help="check manifests", description=VALIDATE)
    _translation_arguments(validate)
    translate = commands.add_parser(
        "translate", help="print statuses and routing table", description=TRANSLATE
    )
    _translation_arguments(translate)
    translate.add_argument("-o", "--output", choices=("yaml", "json"), default="yaml")
    ask = commands.add_parser("status", help="a running gateway's status", description=STATUS)
    ask.add_argument(
        "--admin",
        default="http://127.0.0.1:9901",
        help="the gateway's admin endpoint URL (default: %(default)s)",
    )
    ask.add_argument("--token-file", help="file holding the admin token (see --admin-token-file)")
    commands.add_parser("plugins", help="the filter plugins installed here", description=PLUGINS)
    return top


def _plugins() -> int:
    """Each installed filter plugin: its name, what it does, its config schema."""
    installed = installed_plugins()
    for name in sorted(installed):
        plugin = installed[name]
        print(f"{name}: {printable(str(plugin.description))}")
        schema = json.dumps(plugin.config_schema, indent=2, sort_keys=True)
        print("  config schema: " + schema.replace("\n", "\n  "))
    if not installed:
        print("no filter plugins are installed (docs/filters.md: how to write one)")
    return 0


def _offline(args: argparse.Namespace) -> tuple[offline.Loaded, Translation]:
    for directory in args.directories:
        if not os.path.isdir(directory):
            raise usage.UsageError(f"{directory!r} is not a directory")
    given = {name: getattr(args, name.replace("-", "_")) for name in offline.TRANSLATION_OPTIONS}
    options = offline.gateway_options(args.directories[0], given)
    loaded = offline.load(args.directories, options)
    return loaded, offline.run_translation(loaded, options)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return _run(parser().parse_args(argv))
    except BrokenPipeError:  # (the output went into a pipe closed early, e.g. ``| head``)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


def _run(args: argparse.Namespace) -> int:
    try:
        if args.command == "status":
            return status.run(args.admin, args.token_file, sys.stdout, sys.stderr)
        if args.command == "plugins":
            return _plugins()
        loaded, translation = _offline(args)
    except usage.UsageError as exc:
        print(f"twistgw {args.command}: {exc}", file=sys.stderr)
        return 2
    if args.command == "translate":
        document = offline.status_document(loaded, translation)
        if args.output == "json":
            json.dump(document, sys.stdout, indent=1)
            sys.stdout.write("\n")
        else:
            yaml.safe_dump(document, sys.stdout, sort_keys=False)
        return 0
    found = list(offline.problems(loaded, translation))
    for line in found:
        print(printable(line))
    count = len(loaded.snapshot.objects)
    summary = f"{len(found)} problem(s)" if found else "no problems"
    print(f"{summary}; {count} object(s) read", file=sys.stderr)
    return 1 if found else 0
