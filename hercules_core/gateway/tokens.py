"""``hercules token create NAME``: add a principal to the gateway's credentials file.

The token is printed once and only its sha256 is written; with ``--s3`` an S3 access key pair is
made too (its secret is stored as is: SigV4 needs it to check signatures); ``--rate``/``--burst``
limit its requests per second (``rates``). Send SIGHUP to the gateway afterwards so it re-reads
the file.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
from collections.abc import Iterator
from pathlib import Path

from hercules_core.plugins import hookimpl
from hercules_core.plugins.types import CliCommandSpec


def _configure(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="token_command", required=True)
    create = sub.add_parser("create", help="add a principal and print its token once")
    create.add_argument("name")
    create.add_argument("--access", choices=("read", "write", "admin"), default="read")
    create.add_argument("--prefix", default="/", help="only this subtree (default: everything)")
    create.add_argument("--s3", action="store_true", help="also make an S3 access key pair")
    create.add_argument("--rate", type=float, help="at most this many requests per second (REST and S3)")
    create.add_argument("--burst", type=float, help="requests at once within the rate (default: one second's worth)")
    create.add_argument("--file", default=os.environ.get("HERCULES_AUTH_FILE"),
                        help="the credentials file (default: $HERCULES_AUTH_FILE)")


def _entry(fields: dict[str, str | float]) -> str:
    """One ``[[principal]]`` table: JSON string escapes are valid TOML basic strings."""
    return "\n[[principal]]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in fields.items())


def create(args: argparse.Namespace) -> int:
    from hercules_core.errors import HerculesError
    from hercules_core.gateway.auth import load_principals, token_hash
    from hercules_core.gateway.rates import Rate
    from hercules_core.paths import normalize

    if not args.file:
        print("hercules token create: name the credentials file with --file or HERCULES_AUTH_FILE", file=sys.stderr)
        return 2
    path = Path(args.file)
    try:
        prefix = normalize(args.prefix, what="prefix")
        Rate.parse(args.rate, args.burst, "--rate/--burst")
        existing = load_principals(path) if path.exists() else []
    except HerculesError as exc:
        print(f"hercules token create: {exc.message}", file=sys.stderr)
        return 1
    if any(p.name == args.name for p in existing):
        print(f"hercules token create: {path} already has a principal {args.name!r}", file=sys.stderr)
        return 1
    token = "hct_" + secrets.token_urlsafe(32)
    fields: dict[str, str | float] = {"name": args.name, "token_sha256": token_hash(token), "access": args.access,
                                      "prefix": prefix}
    fields.update({k: v for k, v in (("rate", args.rate), ("burst", args.burst)) if v is not None})
    if args.s3:
        fields["s3_access_key"] = "HK" + secrets.token_hex(9).upper()
        fields["s3_secret_key"] = secrets.token_urlsafe(30)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)  # secrets: owner only
    with os.fdopen(fd, "a") as f:
        f.write(_entry(fields))
    print(f"token for {args.name}: {token}")
    if args.s3:
        print(f"S3 access key: {fields['s3_access_key']}\nS3 secret key: {fields['s3_secret_key']}")
    print(f"(shown once; written to {path}: send SIGHUP to the gateway to load it)", file=sys.stderr)
    return 0


def run(args: argparse.Namespace) -> int:
    return create(args)


@hookimpl
def hercules_cli_commands() -> Iterator[CliCommandSpec]:
    yield CliCommandSpec(name="token", summary="manage the gateway's bearer tokens (token create NAME)",
                         configure_parser=_configure, run=run)
