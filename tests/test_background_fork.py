"""BackgroundDelivery across os.fork(), in a subprocess: the child starts its own workers on first use and delivers
only its own events; the parent's queued and in-flight deliveries stay the parent's, each delivered once."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from cases import ROOT
from httpserver import HttpServer

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="no os.fork on this platform")

SCRIPT = r"""
import json, os, sys
sys.path[:0] = [sys.argv[2], sys.argv[3]]
from background_helpers import ENV, Gate, Results, event, local
from flaghooks import BackgroundDelivery, Endpoint, Webhooks

parent = os.getpid()
gate = Gate(local(), hold=lambda request: os.getpid() == parent)  # the parent's attempts wait for the gate
results = Results()
webhooks = Webhooks(transport=gate, on_result=results)
webhooks.subscribe(Endpoint(sys.argv[1]), environment=ENV)
background = BackgroundDelivery(webhooks)
mine = [d.id for n in range(3) for d in background.publish(event(n))]  # one in flight (held), two queued
results.wait_for(lambda: len(gate.started) == 1)
child = os.fork()
if child == 0:
    theirs = [d.id for n in (100, 101) for d in background.publish(event(n))]
    flushed = background.flush(30)
    line = {"who": "child", "flushed": flushed, "ids": theirs, "results": [r.event_id for r in results.results],
            "reported": [r.delivery_id for r in results.results]}
    sys.stdout.write(json.dumps(line) + "\n")
    sys.stdout.flush()
    os._exit(0)
_, status = os.waitpid(child, 0)
gate.open.set()
flushed = background.flush(30)
background.close()
line = {"who": "parent", "flushed": flushed, "ids": mine, "results": sorted(r.event_id for r in results.results),
        "reported": [r.delivery_id for r in results.results], "child_status": status}
sys.stdout.write(json.dumps(line) + "\n")
"""


def test_child_delivers_only_its_own_events() -> None:
    """Acceptance 4: after fork the child delivers its two events and none of the parent's three (one was in
    flight, two queued at the fork); the parent then delivers its three, each exactly once; delivery ids never
    repeat across the fork."""
    with HttpServer() as server:
        run = subprocess.run(
            [sys.executable, "-c", SCRIPT, server.url("/hook"), str(ROOT / "src"), str(ROOT / "tests")],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert run.returncode == 0, run.stderr
        lines = {line["who"]: line for line in map(json.loads, run.stdout.splitlines())}
        received = sorted(request.headers["webhook-id"] for request in server.received)
    child, parent = lines["child"], lines["parent"]
    assert child["flushed"] and parent["flushed"] and parent["child_status"] == 0
    assert child["results"] == ["evt_100", "evt_101"] and child["reported"] == child["ids"]
    assert parent["results"] == ["evt_0", "evt_1", "evt_2"] and sorted(parent["reported"]) == sorted(parent["ids"])
    assert received == ["evt_0", "evt_1", "evt_100", "evt_101", "evt_2"]
    assert not set(child["ids"]) & set(parent["ids"])
