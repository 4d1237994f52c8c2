"""Rules, alerts (the resumable stream), events, and auth with typed errors."""

from __future__ import annotations

import threading

import pytest
from conftest import small_model, unique

import driftdb


def test_rules_add_list_rm(db):
    model = unique("rules")
    db.models.create(small_model(model))
    rule = {
        "id": f"{model}-psi",
        "model": model,
        "selector": "amount",
        "metric": "psi",
        "comparison": ">",
        "threshold": 0.2,
        "severity": "high",
        "actions": [{"kind": "pagerduty", "routing_key": "SECRETKEY"}],
    }
    r = db.rules.add(rule)
    assert (r.id, r.version, r.model, r.severity) == (rule["id"], 1, model, "high")
    assert "SECRETKEY" not in str(r.definition)
    assert db.rules.add(dict(rule, threshold=0.3)).version == 2
    assert [x.id for x in db.rules.list(model=model)] == [rule["id"]]
    with pytest.raises(driftdb.InvalidArgument, match="comparison"):
        db.rules.add(dict(rule, id=f"{model}-bad", comparison="~"))
    db.rules.rm(rule["id"])
    assert db.rules.list(model=model) == []
    with pytest.raises(driftdb.NotFound):
        db.rules.rm(rule["id"])


def test_watch_alerts_resumes_by_sequence(db):
    model = unique("events")
    db.models.create(small_model(model))
    db.rules.add(
        {
            "id": f"{model}-release",
            "model": model,
            "kind": "event",
            "event": "release",
            "severity": "low",
            "actions": [],
        }
    )
    fired = db.announce_event(model, "release", version="v3")
    assert len(fired) == 1 and fired[0].rule_kind == "event" and fired[0].event == "release"
    first = fired[0].sequence
    with db.watch_alerts(after=first - 1, model=model, timeout=10) as watch:
        a = next(watch)
        assert (a.sequence, a.model, a.state) == (first, model, "firing")
        got = []

        def read():
            got.append(next(watch))

        t = threading.Thread(target=read)
        t.start()
        second = db.announce_event(model, "release")[0]
        t.join(10)
        assert got and got[0].sequence == second.sequence > first
        assert watch.last_sequence == second.sequence
    # Resuming after the last sequence seen gives nothing old.
    with db.watch_alerts(after=second.sequence, model=model, timeout=1.0) as watch:
        assert list(watch) == []
    hist = db.alerts.list(model=model)
    assert {x.sequence for x in hist} == {first, second.sequence}


def test_typed_errors_carry_the_servers_message(db):
    with pytest.raises(driftdb.InvalidArgument) as e:
        db.query("psi(fraud.*) ovr 1h")
    assert "line 1" in e.value.message or "column" in e.value.message
    with pytest.raises(driftdb.NotFound, match="not found"):
        db.models.show(unique("nope"))
    model = unique("dup")
    db.models.create(small_model(model))
    db.models.create(small_model(model))  # the same definition again: fine
    with pytest.raises(driftdb.AlreadyExists, match="already exists"):
        db.models.create(small_model(model, sampling=0.5))


def test_auth(auth_server):
    anon = auth_server.client(api_key="")
    with pytest.raises(driftdb.Unauthenticated):
        anon.models.list()
    admin = auth_server.client()
    model = unique("auth")
    admin.models.create(dict(small_model(model), team="t1"))
    other = unique("other")
    admin.models.create(dict(small_model(other), team="t2"))
    reader = admin.keys.create("reader", scopes=["read"], team="t1")
    assert reader.token.startswith("ddb_") and reader.key.scopes == ["read"]
    ro = auth_server.client(api_key=reader.token)
    assert {m["id"] for m in ro.models.list()} == {model}  # not t2's model
    with pytest.raises(driftdb.NotFound):
        ro.models.show(other)
    with pytest.raises(driftdb.PermissionDenied):
        ro.ingest({"request_id": ["a"], "amount": [1.0]}, model=model, version="v1")
    # A monitor with the wrong scope never raises; the problem shows in its stats.
    mon = ro.monitor(model, version="v1", flush_interval=0.02, max_queue=50)
    for i in range(100):
        mon.log(request_id=f"x{i}", features={"amount": 1.0})
    assert mon.flush(timeout=1.0) is False
    assert "PERMISSION_DENIED" in (mon.stats().last_error or "")
    mon.close(timeout=0.2)
    # With the admin key, everything works.
    w = admin.monitor(model, version="v1", flush_interval=0.02)
    for i in range(100):
        w.log(request_id=f"y{i}", features={"amount": 1.0})
    assert w.flush(timeout=30) and w.stats().acked == 100
    admin.keys.revoke(reader.key.id)
    with pytest.raises(driftdb.Unauthenticated):
        ro.models.list()
    for c in (anon, admin, ro):
        c.close()
