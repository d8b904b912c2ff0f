"""Subcommands from plugins (``hercules_cli_commands``): mounted beside the built-in ones at start-up."""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import types

import pytest

from hercules_core.cli import build_parser, main
from hercules_core.errors import PluginError
from hercules_core.plugins import hookimpl
from hercules_core.plugins.manager import PluginManager, make_plugin_manager
from hercules_core.plugins.types import CliCommandSpec


def _say_hello(args: argparse.Namespace) -> int:
    print(f"hello, {args.who}")
    return 7


def _with_commands(*specs: CliCommandSpec, name: str = "hello", dist: str = "thirdparty-hello",
                   pm: PluginManager | None = None) -> PluginManager:
    pm = pm or make_plugin_manager(load_entrypoints=False, strict=True)
    plugin = types.ModuleType(f"thirdparty_{name}")

    @hookimpl
    def hercules_cli_commands():  # type: ignore[no-untyped-def]
        yield from specs

    plugin.hercules_cli_commands = hercules_cli_commands  # type: ignore[attr-defined]
    pm.register(plugin, name, distribution=dist, version="1.0")
    return pm


HELLO = CliCommandSpec(name="hello", summary="say hello", run=_say_hello,
                       configure_parser=lambda p: p.add_argument("--who", default="world"))


def test_a_plugin_command_is_mounted_and_its_exit_code_returned(capsys: pytest.CaptureFixture[str]) -> None:
    pm = _with_commands(HELLO)
    assert list(pm.cli_commands()) == ["hello"]
    assert main(["hello", "--who", "hercules"], plugins=pm) == 7
    assert capsys.readouterr().out == "hello, hercules\n"
    assert "say hello" in build_parser(pm).format_help()
    assert {r.name: r.contributes for r in pm.list_plugins()}["hello"] == {"cli_command": ["hello"]}


def test_a_command_without_arguments_needs_no_configure_parser(capsys: pytest.CaptureFixture[str]) -> None:
    pm = _with_commands(CliCommandSpec(name="hi", summary="hi", run=lambda args: print("hi") or 0))
    assert main(["hi"], plugins=pm) == 0 and capsys.readouterr().out == "hi\n"


def test_a_built_in_name_is_refused_naming_the_distribution(capsys: pytest.CaptureFixture[str]) -> None:
    pm = _with_commands(CliCommandSpec(name="ls", summary="my ls", run=lambda args: 0), name="myls",
                        dist="thirdparty-ls")
    with pytest.raises(PluginError, match="'ls'.*thirdparty-ls.*built-in"):
        build_parser(pm)
    assert main(["ls"], plugins=pm) == 2
    assert "thirdparty-ls" in capsys.readouterr().err


def test_two_plugins_offering_one_command_is_an_error_naming_both() -> None:
    pm = _with_commands(HELLO)
    pm = _with_commands(HELLO, name="hello2", dist="thirdparty-hello2", pm=pm)
    with pytest.raises(PluginError, match="'hello' is provided by both plugin 'hello' and 'hello2'"):
        build_parser(pm)


def test_a_broken_configure_parser_breaks_only_its_own_command(capsys: pytest.CaptureFixture[str]) -> None:
    def broken(parser: argparse.ArgumentParser) -> None:
        raise RuntimeError("boom")

    pm = _with_commands(CliCommandSpec(name="broken", summary="b", run=lambda args: 0, configure_parser=broken),
                        name="brokencmd", dist="thirdparty-broken")
    assert build_parser(pm).parse_args(["ls", "/x"]).paths == ["/x"]  # ls takes several paths
    assert main(["broken"], plugins=pm) == 2
    err = capsys.readouterr().err
    assert "thirdparty-broken" in err and "boom" in err


def test_bench_is_its_own_distribution_and_comes_through_the_hook() -> None:
    assert importlib.util.find_spec("hercules_core.bench") is None
    rows = {r.name: r for r in make_plugin_manager(strict=True).list_plugins()}
    assert rows["bench"].distribution == "hercules-bench"
    assert rows["bench"].contributes == {"cli_command": ["bench"]}
    run = [sys.executable, "-m", "hercules_core"]
    top = subprocess.run([*run, "--help"], capture_output=True, text=True, timeout=60)
    assert top.returncode == 0 and "bench" in top.stdout, top.stderr
    bench = subprocess.run([*run, "bench", "--help"], capture_output=True, text=True, timeout=60)
    assert bench.returncode == 0 and "--quick" in bench.stdout, bench.stderr
    listing = subprocess.run([*run, "plugins", "--json"], capture_output=True, text=True, timeout=60)
    assert {"cli_command": ["bench"]} in [row["contributes"] for row in json.loads(listing.stdout)]
