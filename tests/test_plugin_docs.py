"""docs/plugins.md carries the reference generated from the hook specs, and every hook has docs
and a contract suite in ``hercules_core.testing``."""

from __future__ import annotations

import importlib
import inspect
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from hercules_core.plugins import reference
from hercules_core.testing import CONTRACTS

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "plugins.md"


def first_party_distributions() -> set[str]:
    """The core and every distribution under plugins/: whose settings the reference lists."""
    names = {tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["name"]}
    for project in (ROOT / "plugins").glob("*/pyproject.toml"):
        names.add(tomllib.loads(project.read_text())["project"]["name"])
    return names


def test_the_doc_holds_the_current_reference() -> None:
    expected = reference.render(distributions=first_party_distributions())
    embedded = reference.embedded(DOC.read_text())
    assert embedded, f"{DOC} has no {reference.BEGIN!r} ... {reference.END!r} section"
    assert embedded == expected, (
        "docs/plugins.md's reference is out of date: replace the part between the markers with the "
        "output of `.venv/bin/python -m hercules_core.plugins.reference`")


def test_the_reference_is_printed_by_its_module() -> None:
    out = subprocess.run([sys.executable, "-m", "hercules_core.plugins.reference"], capture_output=True,
                         text=True, check=True, cwd=ROOT).stdout
    assert out.startswith(reference.BEGIN) and out.rstrip().endswith(reference.END)
    for hook in reference.hooks():
        assert f"### `{hook.__name__}()" in out


@pytest.mark.parametrize("hook", reference.hooks(), ids=lambda hook: hook.__name__)
def test_every_hook_has_docs_a_descriptor_and_a_contract_suite(hook) -> None:  # noqa: ANN001
    doc = inspect.getdoc(hook) or ""
    for part in ("Role and phase", "Returns", "Example"):
        assert part in doc, f"{hook.__name__}'s docstring lacks {part!r}"
    descriptor = reference.descriptor_of(hook)
    assert descriptor is not None, f"{hook.__name__} does not say which descriptor it yields"
    assert inspect.getdoc(descriptor), f"{descriptor.__name__} has no docstring"
    assert hook.__name__ in CONTRACTS, f"{hook.__name__} has no contract suite in hercules_core.testing"
    module = importlib.import_module(CONTRACTS[hook.__name__])
    suites = [obj for name, obj in vars(module).items()
              if inspect.isclass(obj) and name.endswith("Contract") and obj.__module__ == module.__name__]
    assert suites, f"{module.__name__} defines no ...Contract class"
    assert any(name.startswith("test_") for suite in suites for name in dir(suite))


def test_no_contract_for_a_hook_that_does_not_exist() -> None:
    assert set(CONTRACTS) == {hook.__name__ for hook in reference.hooks()}


def test_every_contract_suite_is_run_by_the_first_party_plugins() -> None:
    """The project's tests subclass every suite (tests/test_contracts.py and the store tests)."""
    source = "".join(path.read_text() for path in (ROOT / "tests").glob("test_*.py"))
    for module in CONTRACTS.values():
        assert f"from {module} import" in source, f"no test of the project runs a suite of {module}"
