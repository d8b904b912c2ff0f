"""Run ceph's s3-tests (vendored in ``upstream/``, MIT licence) against a fresh local cluster.

    python plugins/s3/s3-tests/run.py            # the allow-list (allowlist.txt): must all pass
    python plugins/s3/s3-tests/run.py --all      # every test, to see what else passes

The allow-list names tests that pass; ``exclusions.md`` groups the rest with their reasons. Every
request is signed: the cluster runs with the suite's users' keys (``USERS``).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from hercules_core.testing.cluster import LocalCluster

HERE = Path(__file__).resolve().parent
USERS = {"main": ("0555b35654ad1656d804", "h7GhxuBLTrlhVUyxSPUKUV8r/2EI4ngqJxD7iBdBYLhwluN30JaT3Q=="),
         "alt": ("NOPQRSTUVWXYZABCDEFG", "nopqrstuvwxyzabcdefghijklmnabcdefghijklm"),
         "tenant": ("HIJKLMNOPQRSTUVWXYZA", "opqrstuvwxyzabcdefghijklmnopqrstuvwxyzab")}
# Every request is signed: the main user is the settings' key pair, the alt and tenant users are
# principals of the gateway's credentials file (write access to everything: there are no ACLs, so
# the tests where another user is refused are excluded for that reason, exclusions.md).
SETTINGS = {"HERCULES_CHUNK_SIZE": "4MiB", "HERCULES_HEARTBEAT_INTERVAL": "0.5",
            "HERCULES_S3_ACCESS_KEY": USERS["main"][0], "HERCULES_S3_SECRET_KEY": USERS["main"][1]}
PRINCIPAL = """
[[principal]]
name = "{name}"
token = "s3-tests-{name}"
access = "write"
s3_access_key = "{access}"
s3_secret_key = "{secret}"
"""
CONF = """[DEFAULT]
host = 127.0.0.1
port = {port}
is_secure = False
ssl_verify = False
[fixtures]
bucket prefix = hercules-{{random}}-
[s3 main]
display_name = hercules
user_id = hercules
email = hercules@example.com
api_name = default
access_key = {main[0]}
secret_key = {main[1]}
[s3 alt]
display_name = alt
email = alt@example.com
user_id = alt
access_key = {alt[0]}
secret_key = {alt[1]}
[s3 tenant]
display_name = tenant
user_id = tenant
access_key = {tenant[0]}
secret_key = {tenant[1]}
email = tenant@example.com
tenant = testx
[iam]
email = s3@example.com
user_id = iam
access_key = ABCDEFGHIJKLMNOPQRST
secret_key = abcdefghijklmnopqrstuvwxyzabcdefghijklmn
display_name = iam
[iam root]
access_key = AAAAAAAAAAAAAAAAAAaa
secret_key = aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa
user_id = RGW11111111111111111
email = account1@ceph.com
[iam alt root]
access_key = BBBBBBBBBBBBBBBBBBbb
secret_key = bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb
user_id = RGW22222222222222222
email = account2@ceph.com
"""


def allowed() -> list[str]:
    lines = (HERE / "allowlist.txt").read_text().splitlines()
    return [line.split("#")[0].strip() for line in lines if line.split("#")[0].strip()]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--all", action="store_true", help="run every test, not only the allow-list")
    parser.add_argument("pytest_args", nargs="*")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="hercules-s3-tests-") as tmp:
        credentials = Path(tmp) / "credentials.toml"
        credentials.write_text("".join(PRINCIPAL.format(name=name, access=access, secret=secret)
                                       for name, (access, secret) in USERS.items() if name != "main"))
        settings = {**SETTINGS, "HERCULES_AUTH_FILE": str(credentials)}
        with LocalCluster(Path(tmp) / "cluster", settings=settings) as cluster:
            conf = Path(tmp) / "s3tests.conf"
            conf.write_text(CONF.format(port=cluster.s3_port, **USERS))
            return run_suite(conf, args)


def run_suite(conf: Path, args: argparse.Namespace) -> int:
    """ceph's tests (the allow-list, or ``--all``) against the cluster ``conf`` describes."""
    module = "s3tests/functional/test_s3.py"
    targets = [module] if args.all else [f"{module}::{name}" for name in allowed()]
    env = {**os.environ, "S3TEST_CONF": str(conf)}
    cmd = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rN", "--timeout", "15",
           *targets, *args.pytest_args]
    return subprocess.call(cmd, cwd=HERE / "upstream", env=env)

if __name__ == "__main__":
    sys.exit(main())
