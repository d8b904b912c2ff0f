"""``hercules dev``: a local cluster on 127.0.0.1 until Ctrl-C."""

from __future__ import annotations

import argparse
import signal
import time
from pathlib import Path

from hercules_core.testing.cluster import LocalCluster


def run_dev(args: argparse.Namespace) -> int:
    settings = {"HERCULES_CHUNK_SIZE": args.chunk_size} if args.chunk_size else {}
    cluster = LocalCluster(Path(args.data), chunkservers=args.chunkservers, store=args.store, settings=settings,
                           master_port=args.master_port, gateway_port=args.gateway_port,
                           chunk_ports=[args.chunk_port + i for i in range(args.chunkservers)])
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    cluster.start()
    print(f"Hercules is up: master {cluster.master_addr}, "
          f"{args.chunkservers} chunkservers ({args.store}), data in {cluster.root}")
    print(f"Gateway: {cluster.gateway_url}   (try: curl {cluster.gateway_url}/health)")
    print(f"Logs: {cluster.root / 'logs'}   Ctrl-C stops everything.", flush=True)
    try:
        while not stopping:
            for proc in cluster.procs.values():
                if not proc.running:
                    print(f"{proc.name} exited; see {proc.log_path}")
                    stopping = True
            time.sleep(0.5)
    finally:
        cluster.stop()
        print("stopped")
    return 0
