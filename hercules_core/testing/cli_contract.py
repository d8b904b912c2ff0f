"""The behaviour every ``hercules <name>`` subcommand must show; CLI-command plugins run it.

Subclass ``CliCommandContract`` in a test module under a name pytest collects (``Test...``)::

    from hercules_core.plugins import make_plugin_manager
    from hercules_core.testing.cli_contract import CliCommandContract

    class TestHello(CliCommandContract):
        example_args = ["--who", "you"]  # arguments that parse (the command is not run)

        def command(self):
            return make_plugin_manager().cli_commands()["hello"]

What is checked is what ``hercules`` relies on at start-up, for every invocation: a name that is
one lowercase word and no built-in command's, a one-line summary, a ``configure_parser`` that
adds its arguments to a fresh subparser without failing (``--help`` works), a callable ``run``,
and a place beside the built-in commands and every other installed plugin's.
"""

from __future__ import annotations

import argparse
import re

import pytest

from hercules_core.plugins import hookimpl
from hercules_core.plugins.manager import make_plugin_manager
from hercules_core.plugins.types import CliCommandSpec

_NAME = re.compile(r"[a-z][a-z0-9-]*\Z")


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """The subparsers of ``hercules``'s parser, by command name."""
    for action in parser._actions:  # argparse keeps them nowhere public
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


class CliCommandContract:
    """Base class of the contract tests; override ``command`` (and maybe ``example_args``).

    Not collected itself (its name does not start with ``Test``); each subclass is.
    """

    example_args: list[str] = []  # arguments after the command's name that must parse

    def command(self) -> CliCommandSpec:
        """The ``CliCommandSpec`` under test, usually ``make_plugin_manager().cli_commands()[name]``."""
        raise NotImplementedError("subclass CliCommandContract and implement command()")

    @pytest.fixture
    def spec(self) -> CliCommandSpec:
        return self.command()

    def mounted(self, spec: CliCommandSpec) -> argparse.ArgumentParser:
        """``spec``'s own subparser, set up as ``hercules`` sets it up."""
        parser = argparse.ArgumentParser(prog="hercules")
        p = parser.add_subparsers(dest="command").add_parser(spec.name, help=spec.summary)
        if spec.configure_parser is not None:
            spec.configure_parser(p)
        return parser

    # -- the descriptor ---------------------------------------------------------------

    def test_name_and_summary(self, spec: CliCommandSpec) -> None:
        assert _NAME.match(spec.name), f"{spec.name!r}: a command name is one lowercase word ([a-z0-9-])"
        assert spec.summary.strip() and "\n" not in spec.summary, "the summary is one line"
        assert callable(spec.run)
        assert spec.configure_parser is None or callable(spec.configure_parser)

    def test_not_a_built_in_command(self, spec: CliCommandSpec) -> None:
        from hercules_core.cli import build_parser

        builtin = subcommands(build_parser(make_plugin_manager(load_entrypoints=False)))
        assert builtin, "the built-in commands were not found"
        assert spec.name not in builtin, f"`hercules {spec.name}` is a built-in command"

    # -- its arguments ------------------------------------------------------------------

    def test_configure_parser_adds_arguments_that_parse(self, spec: CliCommandSpec) -> None:
        args = self.mounted(spec).parse_args([spec.name, *self.example_args])
        assert args.command == spec.name

    def test_help_works(self, spec: CliCommandSpec, capsys: pytest.CaptureFixture[str]) -> None:
        with pytest.raises(SystemExit) as exit_:
            self.mounted(spec).parse_args([spec.name, "--help"])
        assert exit_.value.code == 0
        assert capsys.readouterr().out.strip()

    def test_mounts_beside_the_built_in_and_installed_commands(self, spec: CliCommandSpec) -> None:
        from hercules_core.cli import build_parser

        plugins = make_plugin_manager()
        if spec.name not in plugins.cli_commands():  # not installed (yet): mount it as a plugin would be
            class Plugin:
                @hookimpl
                def hercules_cli_commands(self):  # type: ignore[no-untyped-def]
                    yield spec

            plugins.register(Plugin(), "contract-under-test", distribution="contract-under-test")
        parser = build_parser(plugins)
        assert spec.name in subcommands(parser)
        args = parser.parse_args([spec.name, *self.example_args])
        assert args.func is spec.run


__all__ = ["CliCommandContract", "subcommands"]
