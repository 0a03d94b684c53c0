"""HttpTransport across os.fork(): the child starts with its own pool and deadline thread, and never reads, writes
or closes the connections its parent keeps using. A real fork, a real server on 127.0.0.1 that answers each
process differently."""

from __future__ import annotations

import json
import os
import select
import signal
import time
import warnings
from collections.abc import Callable
from typing import Any

import pytest

from cases import documented_flag_event
from flaghooks import Endpoint
from flaghooks.transports import AttemptResult, DeliveryRequest, HttpTransport
from httpserver import HttpServer, Received, Reply

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="no os.fork on this platform")


def by_process(request: Received, count: int) -> Reply:
    """201 and "parent" to the parent, 202 and "child" to the child; /drip sends its whole answer a byte every
    0.25 s (about 12 s), each byte well within a 1 s socket timeout: only a deadline thread stops it."""
    if request.path == "/drip":
        return Reply(200, body=b"drip", mode="drip", delay=0.25)
    who = request.headers.get("x-who", "")
    return Reply(201 if who == "parent" else 202, body=who.encode())


def post(transport: HttpTransport, url: str, who: str, timeout: float = 5.0) -> AttemptResult:
    request = DeliveryRequest(url, b"{}", {"X-Who": who}, timeout, Endpoint(url), documented_flag_event())
    return transport.send(request)


def in_child(work: Callable[[], dict[str, Any]]) -> tuple[int, int]:
    """Fork; the child runs ``work`` and writes its JSON answer to a pipe. Return (pid, read end)."""
    read_end, write_end = os.pipe()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # 3.12+: fork() with threads running
        pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child, whose coverage is not collected
        code = 0
        try:
            os.close(read_end)
            answer = work()
        except BaseException as exc:  # the parent reports it
            answer = {"crashed": repr(exc)}
            code = 1
        try:
            os.write(write_end, json.dumps(answer).encode())
        finally:
            os._exit(code)
    os.close(write_end)
    return pid, read_end


def child_answer(pid: int, read_end: int, limit: float = 60.0) -> dict[str, Any]:
    """The child's answer, waiting at most ``limit`` seconds (then the child is killed and the test fails)."""
    chunks = []
    deadline = time.monotonic() + limit
    try:
        while True:
            ready, _, _ = select.select([read_end], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                os.kill(pid, signal.SIGKILL)
                pytest.fail(f"the child did not finish within {limit:g} s")
            chunk = os.read(read_end, 65536)
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(read_end)
        os.waitpid(pid, 0)
    answer: dict[str, Any] = json.loads(b"".join(chunks) or b"{}")
    assert "crashed" not in answer, answer["crashed"]
    return answer


def test_child_has_its_own_pool_and_deadline_thread() -> None:
    """After fork, parent and child each get only their own answers; the child connects anew (never over the
    parent's pooled connection, which the parent keeps using afterwards); a 1 s attempt in the child against a
    trickling server ends at its deadline, because the child has a deadline thread of its own."""
    with HttpServer(by_process) as server, HttpTransport(allowed_networks=["127.0.0.0/8"]) as transport:
        url = server.url("/hook")
        warm = post(transport, url, "parent")  # leaves one pooled connection for the child to inherit
        assert (warm.status, warm.response_body) == (201, b"parent")

        def child() -> dict[str, Any]:
            results = [post(transport, url, "child") for _ in range(20)]
            drip = post(transport, server.url("/drip"), "child", timeout=1.0)
            return {
                "answers": [[r.status, r.response_body.decode()] for r in results],
                "drip": [drip.status, drip.error, drip.elapsed],
            }

        pid, read_end = in_child(child)
        parent_answers = [post(transport, url, "parent") for _ in range(20)]
        answer = child_answer(pid, read_end)
        parent_answers += [post(transport, url, "parent") for _ in range(5)]  # after the child is gone

        received = server.received

    assert [(r.status, r.response_body) for r in parent_answers] == [(201, b"parent")] * 25
    assert answer["answers"] == [[202, "child"]] * 20
    status, error, elapsed = answer["drip"]
    assert status is None and error.startswith("timeout"), answer["drip"]
    assert elapsed < 10  # ended by its deadline, long before the dripping answer would have

    parent_ports = {r.client_port for r in received if r.headers.get("x-who") == "parent"}
    child_ports = {r.client_port for r in received if r.headers.get("x-who") == "child"}
    assert len(parent_ports) == 1  # the parent's one connection served it throughout: the child never closed it
    assert not parent_ports & child_ports  # the child never wrote on the parent's connection


def test_transports_created_after_fork_work_in_both() -> None:
    """The fork hook leaves a transport made in the child alone, and a closed transport forked stays usable."""
    with HttpServer(by_process) as server:
        transport = HttpTransport(allowed_networks=["127.0.0.0/8"])
        transport.close()

        def child() -> dict[str, Any]:
            fresh = HttpTransport(allowed_networks=["127.0.0.0/8"])
            statuses = [post(fresh, server.url(), "child").status, post(transport, server.url(), "child").status]
            fresh.close()
            return {"statuses": statuses}

        pid, read_end = in_child(child)
        assert child_answer(pid, read_end)["statuses"] == [202, 202]
        assert post(transport, server.url(), "parent").status == 201
        transport.close()
