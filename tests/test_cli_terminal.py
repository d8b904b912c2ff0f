"""The command line on a terminal (a pseudo-terminal): progress bars for transfers, and no file
data poured into the terminal."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
from pathlib import Path

from hercules_core.testing.cluster import LocalCluster


def on_terminal(env: dict[str, str], *args: str) -> tuple[int, str]:
    """Run the CLI with stdin, stdout and stderr on a pty; everything it drew, and its exit code."""
    leader, follower = pty.openpty()
    full = {k: v for k, v in os.environ.items() if not k.startswith("HERCULES_")} | env | {"COLUMNS": "120"}
    proc = subprocess.Popen([sys.executable, "-m", "hercules_core", *args], stdin=follower, stdout=follower,
                            stderr=follower, env=full, close_fds=True)
    os.close(follower)
    out = bytearray()
    while True:
        ready, _, _ = select.select([leader], [], [], 120)
        if not ready:
            proc.kill()
            break
        try:
            data = os.read(leader, 65536)
        except OSError:  # EIO: the child closed its end
            break
        if not data:
            break
        out += data
    os.close(leader)
    return proc.wait(timeout=60), out.decode(errors="replace")


def test_a_transfer_on_a_terminal_shows_a_progress_bar_with_rate(cluster: LocalCluster, tmp_path: Path) -> None:
    # A bar appears once a transfer has lasted HERCULES_PROGRESS_AFTER seconds (1 by default);
    # 0 here, so the test does not depend on how fast this machine moves 8 MiB.
    env = {"HERCULES_MASTER": cluster.master_addr, "HERCULES_PROGRESS_AFTER": "0"}
    (tmp_path / "big").write_bytes(os.urandom(8 << 20))
    code, drawn = on_terminal(env, "put", str(tmp_path / "big"), "/tty/big")
    assert code == 0, drawn
    assert "put /tty/big" in drawn and "8.4/8.4 MB" in drawn and "B/s" in drawn, drawn
    code, drawn = on_terminal(env, "get", "/tty/big", str(tmp_path / "back"))
    assert code == 0 and "get /tty/big" in drawn and "8.4/8.4 MB" in drawn, drawn
    assert (tmp_path / "back").read_bytes() == (tmp_path / "big").read_bytes()


def test_no_bar_off_a_terminal(cluster: LocalCluster, tmp_path: Path) -> None:
    (tmp_path / "big").write_bytes(os.urandom(2 << 20))
    env = {k: v for k, v in os.environ.items() if not k.startswith("HERCULES_")}
    result = subprocess.run([sys.executable, "-m", "hercules_core", "put", str(tmp_path / "big"), "/tty/quiet"],
                            env=env | {"HERCULES_MASTER": cluster.master_addr, "HERCULES_PROGRESS_AFTER": "0"},
                            capture_output=True, timeout=120)
    assert (result.returncode, result.stdout, result.stderr) == (0, b"", b"")


def test_file_data_is_never_written_to_a_terminal(cluster: LocalCluster, tmp_path: Path) -> None:
    env = {"HERCULES_MASTER": cluster.master_addr}
    (tmp_path / "bin").write_bytes(b"\x00\x1b[2J binary")
    assert on_terminal(env, "put", str(tmp_path / "bin"), "/tty/bin")[0] == 0
    code, drawn = on_terminal(env, "get", "/tty/bin", "-")
    assert code == 1 and "refusing to write file data to a terminal" in drawn and "binary" not in drawn
