"""docs/client.md runs as written: its Python blocks and its console session, against a real cluster."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from hercules_core.testing.cluster import LocalCluster

DOC = Path(__file__).resolve().parent.parent / "docs" / "client.md"
BLOCK = re.compile(r"^```(\w+)\n(.*?)^```", re.S | re.M)


def blocks(kind: str) -> list[str]:
    return [body for lang, body in BLOCK.findall(DOC.read_text()) if lang == kind]


def session(text: str) -> list[tuple[str, list[str]]]:
    """``$ command`` lines, each with the output lines shown under it."""
    steps: list[tuple[str, list[str]]] = []
    for line in text.splitlines():
        if line.startswith("$ "):
            steps.append((line[2:], []))
        else:
            steps[-1][1].append(line)
    return steps


def env_for(cluster: LocalCluster) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HERCULES_")}
    return env | {"HERCULES_MASTER": cluster.master_addr,
                  "PATH": os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")}


def test_the_doc_has_examples_of_every_kind() -> None:
    assert len(blocks("python")) >= 3 and len(blocks("console")) == 1


@pytest.mark.parametrize("index", range(len(blocks("python"))))
def test_a_python_example_runs_and_prints_what_its_comments_say(cluster: LocalCluster, tmp_path: Path,
                                                                 index: int) -> None:
    code = blocks("python")[index].replace("127.0.0.1:9090", cluster.master_addr)
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env_for(cluster),
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    printed = result.stdout.splitlines()
    for expected in re.findall(r"^\s*print\(.*\)\s+# (.+)$", code, re.M):
        assert expected.strip() in printed, (expected, printed)


def test_the_console_session_runs_and_prints_what_it_shows(cluster: LocalCluster, tmp_path: Path) -> None:
    for command, shown in session(blocks("console")[0]):
        result = subprocess.run(["bash", "-c", command], cwd=tmp_path, env=env_for(cluster),
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, (command, result.stderr)
        if shown:
            assert result.stdout.splitlines() == shown, command
