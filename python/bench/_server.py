"""Starts a throwaway ``driftdb serve`` for the benchmarks (or uses ``--address``)."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import Optional

REPO = Path(__file__).resolve().parents[2]
BIN = Path(os.environ.get("DRIFTDB_BIN") or REPO / "target" / "release" / "driftdb")


class BenchServer:
    def __init__(self, address: Optional[str] = None) -> None:
        self.address = address
        self.proc: Optional[subprocess.Popen] = None
        self.dir: Optional[str] = None

    def __enter__(self) -> "BenchServer":
        if self.address:
            return self
        self.dir = tempfile.mkdtemp(prefix="driftdb-bench-")
        cfg = Path(self.dir) / "config.json"
        cfg.write_text(json.dumps({"retention": "3650d", "downsample_after": "3600d"}))
        self.proc = subprocess.Popen(
            [
                str(BIN),
                "serve",
                "--data",
                str(Path(self.dir) / "data"),
                "--grpc",
                "127.0.0.1:0",
                "--http",
                "127.0.0.1:0",
                "--config",
                str(cfg),
                "--insecure-no-auth",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        ready = threading.Event()

        def read() -> None:
            assert self.proc is not None and self.proc.stdout is not None
            for line in self.proc.stdout:
                m = re.search(r"ready grpc=(\S+)", line)
                if m:
                    self.address = m.group(1)
                    ready.set()
            ready.set()

        threading.Thread(target=read, daemon=True).start()
        if not ready.wait(60) or not self.address:
            raise RuntimeError("driftdb serve did not start")
        return self

    @property
    def pid(self) -> Optional[int]:
        return self.proc.pid if self.proc else None

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        if self.dir:
            shutil.rmtree(self.dir, ignore_errors=True)


def proc_cpu_seconds(pid: int) -> float:
    """User + system CPU of another process, from /proc."""
    with open(f"/proc/{pid}/stat") as f:
        parts = f.read().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return (int(parts[11]) + int(parts[12])) / tick
