"""The ``hercules`` command line against a real cluster, every command in both modes (native
protocol and ``--gateway``): output, ``--json`` field names, errors and exit codes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from hercules_core.testing.cluster import LocalCluster, free_port

from helpers import Http

REST_FIELDS = {"name", "path", "is_dir", "size", "chunk_count", "replication", "created", "modified"}
Cli = Callable[..., subprocess.CompletedProcess]


def run_cli(env: dict[str, str], *args: str, stdin: bytes | None = None, cwd: Path | None = None
            ) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if not k.startswith("HERCULES_")} | env
    return subprocess.run([sys.executable, "-m", "hercules_core", *args], input=stdin, capture_output=True,
                          env=full, cwd=cwd, timeout=120)


@pytest.fixture(params=["native", "gateway"])
def mode(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def cli(cluster: LocalCluster, mode: str) -> Cli:
    env = {"HERCULES_MASTER": cluster.master_addr} if mode == "native" else {"HERCULES_GATEWAY": cluster.gateway_url}
    return lambda *args, **kw: run_cli(env, *args, **kw)


def ok(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 0, result.stderr.decode()
    return result.stdout.decode()


def test_put_ls_stat_get_cat_round_trip(cli: Cli, mode: str, tmp_path: Path) -> None:
    data = os.urandom(2_500_000)  # three 1 MiB chunks
    (tmp_path / "big.bin").write_bytes(data)
    (tmp_path / "note.txt").write_text("hello, hercules\n")
    ok(cli("mkdir", "-p", f"/{mode}/rt"))
    ok(cli("put", str(tmp_path / "big.bin"), str(tmp_path / "note.txt"), f"/{mode}/rt"))
    assert ok(cli("ls", f"/{mode}/rt")) == "big.bin\nnote.txt\n"
    long = ok(cli("ls", "-l", "-h", f"/{mode}/rt")).splitlines()
    assert long[0].startswith("-") and "2.4M" in long[0] and long[0].endswith("big.bin")
    assert ok(cli("stat", f"/{mode}/rt/big.bin")).splitlines()[1].split()[:4] == ["Size:", "2500000", "Chunks:", "3"]
    ok(cli("get", f"/{mode}/rt/big.bin", str(tmp_path / "back.bin")))
    assert (tmp_path / "back.bin").read_bytes() == data
    ok(cli("get", f"/{mode}/rt/note.txt", str(tmp_path / "out")))
    assert (tmp_path / "out").read_text() == "hello, hercules\n"
    assert cli("cat", f"/{mode}/rt/note.txt").stdout == b"hello, hercules\n"
    assert cli("get", f"/{mode}/rt/big.bin", "-").stdout == data  # stdout is a pipe here
    (tmp_path / "cwd").mkdir()
    ok(cli("get", f"/{mode}/rt/note.txt", cwd=tmp_path / "cwd"))  # no LOCAL: its name, here
    assert (tmp_path / "cwd" / "note.txt").read_text() == "hello, hercules\n"
    ok(cli("put", "-", f"/{mode}/rt/stdin.txt", stdin=b"from stdin"))
    assert cli("cat", f"/{mode}/rt/stdin.txt").stdout == b"from stdin"


def test_json_output_uses_the_rest_api_field_names(cli: Cli, mode: str, tmp_path: Path, gw: Http) -> None:
    (tmp_path / "f").write_bytes(b"x" * 10)
    ok(cli("put", str(tmp_path / "f"), f"/{mode}/js/f"))
    put = json.loads(ok(cli("put", "--json", str(tmp_path / "f"), f"/{mode}/js/g")))
    _, rest = gw.json("GET", f"/api/v1/fileinfo?path=/{mode}/js/f")
    stat = json.loads(ok(cli("stat", f"/{mode}/js/f", "--json")))
    assert set(stat) == set(rest) == set(put) == REST_FIELDS and stat == rest
    listing = json.loads(ok(cli("--json", "ls", f"/{mode}/js")))
    _, rest_list = gw.json("GET", f"/api/v1/list?path=/{mode}/js")
    assert listing["path"] == f"/{mode}/js" and listing["entries"] == rest_list["entries"]
    _, rest_cluster = gw.json("GET", "/api/v1/cluster")
    cluster = json.loads(ok(cli("cluster", "--json")))  # the gateway may add fields of its own
    assert {"chunkservers", "chunk_size", "replication"} <= set(cluster) <= set(rest_cluster)
    ok(cli("rm", f"/{mode}/js/g"))
    _, rest_trash = gw.json("GET", "/api/v1/trash")
    trash = json.loads(ok(cli("trash", "--json")))["entries"]
    assert trash and set(trash[0]) == set(rest_trash["entries"][0])
    assert json.loads(ok(cli("du", "-s", "--json", f"/{mode}/js"))) == {"path": f"/{mode}/js", "size": 10}
    df = json.loads(ok(cli("df", "--json")))
    assert df["chunkservers_alive"] == 3 and df["capacity_bytes"] >= df["used_bytes"] > 0


def test_directories_up_and_down_recursively(cli: Cli, mode: str, tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    (tree / "a" / "b").mkdir(parents=True)
    (tree / "top.txt").write_text("top")
    (tree / "a" / "b" / "deep.txt").write_text("deep")
    refused = cli("put", str(tree), f"/{mode}/trees/")
    assert refused.returncode == 1 and refused.stderr.decode() == f"hercules: omitting directory '{tree}' (use put -r)\n"
    ok(cli("mkdir", f"/{mode}/trees"))
    ok(cli("put", "-r", str(tree), f"/{mode}/trees"))
    assert ok(cli("ls", "-R", f"/{mode}/trees/tree")) == (
        f"/{mode}/trees/tree:\na\ntop.txt\n\n/{mode}/trees/tree/a:\nb\n\n/{mode}/trees/tree/a/b:\ndeep.txt\n")
    du = ok(cli("du", f"/{mode}/trees")).splitlines()
    assert du[-1] == f"7\t/{mode}/trees" and f"4\t/{mode}/trees/tree/a" in du
    assert ok(cli("du", "-sh", f"/{mode}/trees")) == f"7\t/{mode}/trees\n"
    ok(cli("get", "-r", f"/{mode}/trees/tree", str(tmp_path / "back")))
    assert (tmp_path / "back" / "a" / "b" / "deep.txt").read_text() == "deep"
    assert (tmp_path / "back" / "top.txt").read_text() == "top"


def test_mv_cp_rm_snapshot_trash_append(cli: Cli, mode: str) -> None:
    d = f"/{mode}/ops"
    ok(cli("mkdir", "-p", f"{d}/dir"))
    ok(cli("append", f"{d}/log", stdin=b"one\n"))  # made on first append
    ok(cli("append", f"{d}/log", stdin=b"two\n"))
    assert cli("cat", f"{d}/log").stdout == b"one\ntwo\n"
    ok(cli("cp", f"{d}/log", f"{d}/copy"))
    ok(cli("mv", f"{d}/copy", f"{d}/dir"))  # into an existing directory
    assert ok(cli("ls", f"{d}/dir")) == "copy\n"
    no_r = cli("cp", f"{d}/dir", f"{d}/dir2")
    assert no_r.returncode == 1 and "use cp -r" in no_r.stderr.decode()
    ok(cli("cp", "-r", f"{d}/dir", f"{d}/dir2"))
    ok(cli("snapshot", d, f"/{mode}/ops-snap"))
    assert cli("cat", f"/{mode}/ops-snap/dir2/copy").stdout == b"one\ntwo\n"
    not_r = cli("rm", f"{d}/dir")
    assert not_r.returncode == 1
    assert not_r.stderr.decode() == f"hercules: cannot remove '{d}/dir': Is a directory (use rm -r)\n"
    ok(cli("rm", "-r", f"{d}/dir"))
    assert f"{d}/dir/" in ok(cli("trash"))
    ok(cli("trash", "restore", f"{d}/dir"))
    assert ok(cli("ls", f"{d}/dir")) == "copy\n"
    assert ok(cli("rm", "-f", f"{d}/never")) == ""
    ok(cli("rm", f"{d}/log"))
    assert f"{d}/log" in ok(cli("trash"))
    assert ok(cli("trash", "purge")).startswith("the trash is empty (")
    assert ok(cli("trash")) == "the trash is empty\n"
    gone = cli("trash", "restore", f"{d}/log")
    assert gone.returncode == 1 and f"'{d}/log'" in gone.stderr.decode()
    assert json.loads(ok(cli("--json", "trash", "purge"))) == {"purged_chunks": 0}


def test_errors_are_one_line_with_coreutils_words_and_exit_codes(cli: Cli, mode: str, tmp_path: Path) -> None:
    cases = [
        (("stat", "/x"), 1, "hercules: cannot stat '/x': No such file or directory\n"),
        (("ls", "/x"), 1, "hercules: cannot access '/x': No such file or directory\n"),
        (("get", "/x", str(tmp_path / "x")), 1, "hercules: cannot stat '/x': No such file or directory\n"),
        (("put", str(tmp_path / "nolocal"), "/y"), 1,
         f"hercules: cannot stat '{tmp_path / 'nolocal'}': No such file or directory\n"),
        (("mkdir", f"/{mode}/no/such/parent"), 1,
         f"hercules: cannot create directory '/{mode}/no/such/parent': No such file or directory\n"),
        (("cat", "/x"), 1, "hercules: cannot read '/x': No such file or directory\n"),
    ]
    for args, code, message in cases:
        result = cli(*args)
        assert (result.returncode, result.stderr.decode()) == (code, message), args
    assert not (tmp_path / "x").exists() and list(tmp_path.iterdir()) == []
    usage = cli("ls", "--bogus")
    assert usage.returncode == 2 and b"Traceback" not in usage.stderr and b"unrecognized arguments: --bogus" in usage.stderr
    ok(cli("mkdir", "-p", f"/{mode}/errs/exists"))
    ok(cli("mkdir", "-p", f"/{mode}/errs/exists"))  # -p: no error if it exists
    exists = cli("mkdir", f"/{mode}/errs/exists")
    assert exists.stderr.decode() == f"hercules: cannot create directory '/{mode}/errs/exists': File exists\n"


def test_global_options_before_or_after_the_subcommand_and_version(cluster: LocalCluster) -> None:
    assert ok(run_cli({}, "--master", cluster.master_addr, "ls", "/")) == ok(run_cli({}, "ls", "/", "--master",
                                                                                      cluster.master_addr))
    assert ok(run_cli({}, "ls", "/", "--gateway", cluster.gateway_url)) == ok(run_cli({}, "ls", "/", "--master-addr",
                                                                                       cluster.master_addr))
    assert ok(run_cli({}, "--version")).startswith("hercules ")


@pytest.mark.parametrize("how", ["--master", "--gateway"])
def test_an_unreachable_cluster_is_one_clear_line(how: str) -> None:
    where = f"127.0.0.1:{free_port()}" if how == "--master" else f"http://127.0.0.1:{free_port()}"
    result = run_cli({}, how, where, "ls", "/")
    err = result.stderr.decode()
    # the native client says once what it waits for (a master may be restarting), then gives up
    assert result.returncode == 1 and err.count("\n") == (2 if how == "--master" else 1), err
    assert err.splitlines()[-1].startswith(f"hercules: error: cannot reach the {how[2:]} at {where}"), err
    assert "Traceback" not in err and "Future exception" not in err


def test_a_failed_get_leaves_nothing_behind(cluster: LocalCluster, tmp_path: Path) -> None:
    """The chunkservers stop answering mid-download; the interrupted get removes its temp file."""
    env = {"HERCULES_MASTER": cluster.master_addr}
    (tmp_path / "src").write_bytes(os.urandom(3 << 20))
    ok(run_cli(env, "put", str(tmp_path / "src"), "/failing/f"))
    dest = tmp_path / "dest"
    dest.mkdir()
    names = [f"chunk{i + 1}" for i in range(cluster.chunkservers)]
    for name in names:
        cluster.pause(name)
    try:
        full = {k: v for k, v in os.environ.items() if not k.startswith("HERCULES_")} | env
        # As from a terminal: Ctrl-C not ignored, even when the suite runs in a background job
        # (which ignores SIGINT, and children inherit that)
        proc = subprocess.Popen([sys.executable, "-m", "hercules_core", "get", "/failing/f", str(dest / "f")],
                                env=full, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        deadline = time.monotonic() + 60
        while not list(dest.iterdir()) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert [p.name.endswith(".part") for p in dest.iterdir()] == [True]
        proc.send_signal(2)  # SIGINT, as Ctrl-C
        assert proc.wait(timeout=60) == 130
    finally:
        for name in names:
            cluster.resume(name)
    assert list(dest.iterdir()) == []
    cluster.wait_live(3)


def test_chunkservers_advertise_the_address_they_are_told(tmp_path: Path) -> None:
    """HERCULES_ADVERTISE_ADDR: the master hands out that address (here a bare host: the bound port
    kept), and a native client moves data through it."""
    with LocalCluster(tmp_path / "c", settings={"HERCULES_ADVERTISE_ADDR": "localhost"}) as c:
        env = {"HERCULES_MASTER": c.master_addr}
        addresses = [s["address"] for s in json.loads(ok(run_cli(env, "cluster", "--json")))["chunkservers"]]
        assert sorted(addresses) == sorted(f"localhost:{port}" for port in c.chunk_ports)
        (tmp_path / "f").write_bytes(os.urandom(100_000))
        ok(run_cli(env, "put", str(tmp_path / "f"), "/adv/f"))
        assert run_cli(env, "cat", "/adv/f").stdout == (tmp_path / "f").read_bytes()


def test_a_gateway_with_authentication_takes_a_token(tmp_path: Path) -> None:
    from hercules_core.gateway.auth import token_hash

    creds = tmp_path / "credentials.toml"
    creds.write_text(f'[[principal]]\nname = "admin"\ntoken_sha256 = "{token_hash("s3cret")}"\naccess = "admin"\n')
    with LocalCluster(tmp_path / "c", settings={"HERCULES_AUTH_FILE": str(creds)}) as c:
        env = {"HERCULES_GATEWAY": c.gateway_url}
        refused = run_cli(env, "ls", "/")
        assert refused.returncode == 1 and refused.stderr.decode().startswith("hercules: cannot access '/': ")
        assert refused.stderr.decode().endswith("(give the gateway a token: --token or HERCULES_TOKEN)\n")
        (tmp_path / "f").write_bytes(b"with a token")
        ok(run_cli(env, "--token", "s3cret", "put", str(tmp_path / "f"), "/tok/f"))
        assert ok(run_cli(env | {"HERCULES_TOKEN": "s3cret"}, "cat", "/tok/f")) == "with a token"
