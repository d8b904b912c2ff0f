"""With the master down, the gateway's /health and the CLI say so at once, not after the 30 s retry."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from hercules_core.testing.cluster import LocalCluster, free_port
from tests.helpers import FAST


def test_health_answers_degraded_at_once_when_the_master_is_down(tmp_path: Path) -> None:
    with LocalCluster(tmp_path, settings=FAST) as c:
        assert c.health()["status"] == "ok"
        c.procs["master"].stop()
        # A slow answer (the client's 30 s master retry) fails here: the HTTP timeout is 5 s.
        try:
            with urllib.request.urlopen(f"{c.gateway_url}/health", timeout=5) as resp:
                status, body = resp.status, json.load(resp)
        except urllib.error.HTTPError as exc:
            status, body = exc.code, json.load(exc)
        assert status == 503
        assert body["status"] == "degraded" and body["master"] == "unreachable", body
        assert c.master_addr in body["error"], body


def test_cli_says_what_it_waits_for_and_fails_clearly_without_a_master(tmp_path: Path) -> None:
    master = f"127.0.0.1:{free_port()}"  # nothing listens here
    env = {k: v for k, v in os.environ.items() if not k.startswith("HERCULES_")}
    proc = subprocess.Popen([sys.executable, "-m", "hercules_core", "ls", "/", "--master-addr", master],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tmp_path)
    try:
        os.set_blocking(proc.stderr.fileno(), False)
        seen = b""
        deadline = time.monotonic() + 20
        while b"\n" not in seen and proc.poll() is None and time.monotonic() < deadline:
            seen += proc.stderr.read() or b""
            time.sleep(0.05)
        first = seen.decode()
        assert f"waiting for the master at {master}" in first, first
        assert proc.poll() is None  # said while still waiting, not only at the end
        os.set_blocking(proc.stderr.fileno(), True)
        out, rest = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    err = (seen + rest).decode()
    assert proc.returncode not in (0, None)
    assert out == b""
    assert "Traceback" not in err, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("hercules: error: ") and master in last and "master" in last, err
