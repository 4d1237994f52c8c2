"""Fixtures: a real ``driftdb serve`` on 127.0.0.1 with a temporary data directory.

The binary is ``$DRIFTDB_BIN`` (default ``<repo>/target/release/driftdb``). The golden data is
dated 2026-03-01, so servers run with ``"retention": "3650d"`` and
``"downsample_after": "3600d"`` (its 15-minute windows must not be merged into hourly ones).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Dict, List, Optional

import pytest

REPO = Path(__file__).resolve().parents[2]
GOLDEN = REPO / "tests" / "data" / "golden"
BIN = Path(os.environ.get("DRIFTDB_BIN") or REPO / "target" / "release" / "driftdb")
READY = re.compile(r"ready grpc=(\S+) http=(\S+)")


def _binary() -> Path:
    if not BIN.exists():
        pytest.fail(
            f"driftdb binary not found at {BIN}: "
            "build it (cargo build --release) or set DRIFTDB_BIN",
            pytrace=False,
        )
    return BIN


# The server is started under `setpriv --pdeathsig KILL` (util-linux, on every Debian), so a
# crashed or killed test run leaves no server behind. Not `preexec_fn`: that runs Python in the
# forked child, and a fork of a process with gRPC threads in flight can hang before exec.
_SETPRIV = shutil.which("setpriv")


class Server:
    """One ``driftdb serve`` process; ``kill()`` + ``start()`` restarts it on the same ports
    and data directory."""

    def __init__(self, data: Path, *, auth: bool = False, config: Optional[Dict[str, Any]] = None):
        self.data = data
        self.auth = auth
        # The golden data is dated 2026-03-01: keep it, and keep its 15-minute windows (older
        # windows are downsampled to hourly ones after `downsample_after`).
        self.config = {"retention": "3650d", "downsample_after": "3600d", **(config or {})}
        # Ports are picked by the first start and kept by restarts.
        self.grpc = "127.0.0.1:0"
        self.http = "127.0.0.1:0"
        self.proc: Optional[subprocess.Popen] = None
        self.log_path = data.parent / f"{data.name}.log"

    def start(self, timeout: float = 60.0) -> "Server":
        self.data.mkdir(parents=True, exist_ok=True)
        cfg = self.data.parent / f"{self.data.name}.config.json"
        cfg.write_text(json.dumps(self.config))
        cmd = [
            *([_SETPRIV, "--pdeathsig", "KILL", "--"] if _SETPRIV else []),
            str(_binary()),
            "serve",
            "--data",
            str(self.data),
            "--grpc",
            self.grpc,
            "--http",
            self.http,
            "--config",
            str(cfg),
        ]
        if not self.auth:
            cmd.append("--insecure-no-auth")
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
        )
        log.close()
        lines: List[str] = []
        found = threading.Event()

        def read() -> None:
            assert self.proc is not None and self.proc.stdout is not None
            for line in self.proc.stdout:
                lines.append(line)
                m = READY.search(line)
                if m:
                    self.grpc, self.http = m.group(1), m.group(2)
                    found.set()
            found.set()

        threading.Thread(target=read, daemon=True).start()
        found.wait(timeout)
        if not READY.search("".join(lines)):
            self.kill()
            log_tail = self.log_path.read_text()[-3000:]
            raise RuntimeError(f"driftdb serve did not become ready: {''.join(lines)}\n{log_tail}")
        return self

    @property
    def address(self) -> str:
        return self.grpc

    @property
    def url(self) -> str:
        return f"http://{self.grpc}"

    @property
    def admin_key(self) -> str:
        return (self.data / "admin.key").read_text().strip()

    def kill(self) -> None:
        """SIGKILL: no clean shutdown (what a crash looks like)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        env = dict(os.environ)
        env.pop("DRIFTDB_API_KEY", None)
        if self.auth:
            env["DRIFTDB_API_KEY"] = self.admin_key
        r = subprocess.run(
            [str(_binary()), *args, "--server", self.url],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if check and r.returncode != 0:
            raise AssertionError(f"driftdb {' '.join(args)} failed: {r.stderr}")
        return r

    def client(self, **kw: Any) -> Any:
        import driftdb

        if self.auth and "api_key" not in kw:
            kw["api_key"] = self.admin_key
        return driftdb.Client(self.address, **kw)


@pytest.fixture(scope="session")
def tmp_root():
    d = Path(tempfile.mkdtemp(prefix="driftdb-py-"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="session")
def server(tmp_root):
    """A shared server without auth; tests use their own model ids."""
    s = Server(tmp_root / "shared").start()
    yield s
    s.stop()


@pytest.fixture
def make_server(tmp_root):
    """Starts servers of the test's own (which it may kill and restart), stopped at the end."""
    made: List[Server] = []

    def make(**kw: Any) -> Server:
        s = Server(tmp_root / f"own-{uuid.uuid4().hex[:8]}", **kw).start()
        made.append(s)
        return s

    yield make
    for s in made:
        s.stop()


@pytest.fixture(scope="session")
def auth_server(tmp_root):
    s = Server(tmp_root / "auth", auth=True).start()
    yield s
    s.stop()


@pytest.fixture
def db(server):
    c = server.client()
    yield c
    c.close()


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


def small_model(model_id: str, *, sampling: float = 1.0, task: str = "binary") -> Dict[str, Any]:
    return {
        "id": model_id,
        "task": task,
        "window": "15m",
        "segments": ["channel"],
        "features": {
            "amount": "numeric",
            "age": "numeric",
            "browser": "categorical",
            "flag": "categorical",
        },
        "sampling": sampling,
    }


def wait_until(pred, timeout: float = 30.0, interval: float = 0.05) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(interval)
    return pred()
