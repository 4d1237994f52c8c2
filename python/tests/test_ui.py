"""Pictures in a real headless browser: Debian's Chromium driven by Playwright.

- the offline ``driftdb report`` page: no console errors, features × windows heatmap cells
  carrying the golden run's PSIs;
- the ``/ui`` console of a seeded server with API keys: the key asked for once, a team key sees
  its team's model only, the heatmap of a chosen range has features × windows cells and a
  cell's value is what ``GET /models/{id}/drift`` answers, a click opens that window's
  ``explain``, and an alert fired while the page is open appears in the live feed with its
  webhook delivery and, once acknowledged, who acknowledged it and why.

Screenshots are kept under ``target/ui-artifacts/``. Chromium is installed by
``scripts/setup.sh --test`` (``DRIFTDB_CHROMIUM`` overrides its path).
"""

from __future__ import annotations

import http.server
import json
import os
import shutil
import subprocess
import threading
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, List

import pytest
from conftest import BIN, GOLDEN, REPO, wait_until

playwright = pytest.importorskip("playwright.sync_api", reason="pip install ./python[ui]")

T0, T2 = "2026-03-01T00:00:00Z", "2026-03-01T02:00:00Z"
ARTIFACTS = REPO / "target" / "ui-artifacts"
FEATURES = 8
WINDOWS = 8
# What the machine's closed network needs (env: Chromium otherwise keeps dialling out).
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_path() -> str:
    path = os.environ.get("DRIFTDB_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(path).exists():
        pytest.fail(f"no Chromium at {path}: run scripts/setup.sh --test", pytrace=False)
    return path


@pytest.fixture(scope="module")
def browser():
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with playwright.sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        yield b
        b.close()


class Console:
    """Console errors and uncaught exceptions of a page."""

    def __init__(self, page: Any) -> None:
        self.errors: List[str] = []
        page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: self.errors.append(str(e)))


def test_offline_report_renders_without_errors(browser, tmp_path):
    out = tmp_path / "drift.html"
    data = tmp_path / "drift.json"
    for path, fmt in ((out, "html"), (data, "json")):
        r = subprocess.run(
            [
                str(BIN),
                "report",
                "--model",
                str(GOLDEN / "model.json"),
                "--version",
                "v2",
                "--reference",
                str(GOLDEN / "reference.jsonl"),
                "--current",
                str(GOLDEN / "windows.jsonl"),
                "--step",
                "15m",
                "--format",
                fmt,
                "-o",
                str(path),
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert r.returncode == 0, r.stderr
    content = json.loads(data.read_text())
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    console = Console(page)
    page.goto(out.as_uri())
    cells = page.locator("#heatmap rect.cell")
    assert cells.count() == FEATURES * WINDOWS
    heat = content["heatmap"]
    first = cells.first
    f = heat["features"].index(first.get_attribute("data-feature"))
    w = heat["windows"].index(int(first.get_attribute("data-window")))
    assert float(first.get_attribute("data-value")) == pytest.approx(
        heat["values"][f][w], abs=1e-12
    )
    assert page.locator("#verdict").get_attribute("data-drift") == "true"
    assert page.locator("#drift-table tr[data-feature]").count() == FEATURES
    page.screenshot(path=str(ARTIFACTS / "report.png"))
    page.screenshot(path=str(ARTIFACTS / "report-full.png"), full_page=True)
    assert console.errors == []
    page.close()


class Receiver:
    """A webhook receiver on loopback that records the bodies it gets."""

    def __init__(self) -> None:
        got: List[Any] = []
        self.got = got

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (the stdlib's name)
                n = int(self.headers.get("content-length") or 0)
                got.append(json.loads(self.rfile.read(n) or b"null"))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def close(self) -> None:
        self.server.shutdown()


def http_json(addr: str, path: str, key: str) -> Any:
    req = urllib.request.Request(f"http://{addr}{path}", headers={"authorization": f"Bearer {key}"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())


def seed(s: Any, tmp: Path) -> None:
    """The golden model for team `risk` with its reference, windows and labels; a second model
    for team `growth`."""
    spec = json.loads((GOLDEN / "model.json").read_text())
    spec["team"] = "risk"
    (tmp / "fraud.json").write_text(json.dumps(spec))
    other = dict(spec, id="ads", team="growth")
    (tmp / "ads.json").write_text(json.dumps(other))
    s.cli("model", "create", "--file", str(tmp / "fraud.json"))
    s.cli("model", "create", "--file", str(tmp / "ads.json"))
    s.cli(
        "reference", "load", "--model", "fraud", "--version", "v2", str(GOLDEN / "reference.jsonl")
    )
    s.cli("ingest", str(GOLDEN / "windows.jsonl"))
    s.cli("labels", str(GOLDEN / "labels.jsonl"), "--model", "fraud")


def test_console_shows_models_heatmap_explain_and_live_alerts(browser, make_server, tmp_path):
    s = make_server(auth=True)
    seed(s, tmp_path)
    admin = s.client()
    hook = Receiver()
    admin.rules.add(
        {
            "id": "fraud-release",
            "model": "fraud",
            "kind": "event",
            "event": "release",
            "severity": "high",
            "actions": [{"kind": "webhook", "url": hook.url}],
        }
    )
    team = admin.keys.create("risk-reader", scopes=["read"], team="risk").token

    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    console = Console(page)
    base = f"http://{s.http}/ui"
    page.goto(base)
    # The key is asked for once and kept in session storage, never in the URL.
    page.fill("#key", team)
    page.click("#login-form button")
    page.wait_for_selector("#model-table tr[data-model]")
    assert page.locator("#model-table tr[data-model]").evaluate_all(
        "rows => rows.map(r => r.dataset.model)"
    ) == ["fraud"]
    assert team not in page.url
    assert page.evaluate("sessionStorage.getItem('driftdb.apiKey')") == team

    # A model over the golden range: a features × windows heatmap whose cells are the drift API's.
    q = urllib.parse.urlencode({"from": T0, "to": T2, "step": "15m"})
    page.goto(f"{base}#/model/fraud?{q}")
    frame = page.frame_locator("#report")
    cells = frame.locator("#heatmap rect.cell")
    cells.first.wait_for()
    assert cells.count() == FEATURES * WINDOWS
    drift = http_json(s.http, f"/models/fraud/drift?{q}", team)
    api = {(r["feature"], r["time"]): r["value"] for r in drift["rows"]}
    cell = frame.locator('#heatmap rect.cell[data-feature="amount"]').nth(5)
    start = int(cell.get_attribute("data-window"))
    iso = next(t for (f, t) in api if f == "amount" and _ms(t) == start)
    assert float(cell.get_attribute("data-value")) == pytest.approx(api[("amount", iso)], abs=1e-12)

    # A click opens that window's explain and jumps to the feature's panel.
    cell.click()
    page.wait_for_selector("#window-explain tr td")
    assert "explain" in page.locator("#window-title").inner_text()
    assert page.locator("#window-explain tr").count() > 1
    page.screenshot(path=str(ARTIFACTS / "console-model.png"))

    # An alert fired while the page is open reaches the live feed, with its delivery.
    page.wait_for_function("document.getElementById('feed-state').textContent === 'live'")
    fired = admin.announce_event("fraud", "release", version="v2")
    assert len(fired) == 1
    item = page.locator('#alerts li[data-rule="fraud-release"]')
    item.wait_for()
    assert wait_until(lambda: hook.got, 30)
    page.reload()  # the feed's history shows the delivery result once the webhook answered
    page.wait_for_function(
        "[...document.querySelectorAll('#alerts li[data-rule=\"fraud-release\"] .deliveries')]"
        ".some(d => d.textContent.includes('delivered'))",
        timeout=30_000,
    )
    assert "firing" in item.first.inner_text()
    # Acknowledged (who and why): the feed shows it.
    seq = fired[0].sequence
    req = urllib.request.Request(
        f"http://{s.http}/alerts/{seq}/ack",
        data=json.dumps({"by": "alice", "comment": "retraining"}).encode(),
        headers={"authorization": f"Bearer {s.admin_key}", "content-type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(req, timeout=30) as r:
        assert r.status == 200
    page.reload()
    ack = page.locator(f'#alerts li[data-seq="{seq}"] .ack')
    ack.wait_for()
    assert "acknowledged by alice: retraining" in ack.inner_text()
    frame.locator("#heatmap rect.cell").first.wait_for()
    page.screenshot(path=str(ARTIFACTS / "console.png"))

    # The team key does not see the other team's model, even by its URL.
    page.goto(f"{base}#/model/ads?{q}")
    page.wait_for_function("document.getElementById('model-error').textContent.includes('404')")
    page.screenshot(path=str(ARTIFACTS / "console-denied.png"), full_page=True)
    assert console.errors == [] or all("404" in e for e in console.errors), console.errors
    page.close()
    hook.close()
    admin.close()


def _ms(t: str) -> int:
    from datetime import datetime

    return int(datetime.fromisoformat(t.replace("Z", "+00:00")).timestamp() * 1000)
