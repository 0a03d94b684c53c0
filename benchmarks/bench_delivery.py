"""Delivery cost: Webhooks + HttpTransport against a hand-written urllib3 sender and requests.post.

One keep-alive HTTP server runs in a separate process on 127.0.0.1. Each sender delivers the same N events,
signed with X-Flagsmith-Signature and carrying the same headers:

- flaghooks: ``Webhooks(transport=HttpTransport(...)).publish(event)`` (encode, sign, SSRF check, deadline, ...);
- hand-written: per event ``json.dumps(payload, sort_keys=True)`` + one HMAC + ``PoolManager.request("POST")``;
- lean urllib3: the same body and HMAC, then ``pool.urlopen`` on one kept ``HTTPConnectionPool`` with the
  arguments HttpTransport passes (no retries, no redirects, a Timeout, the body read and the connection
  released): the floor for what HttpTransport does, without its checks;
- requests: the same body and headers through ``requests.post`` per event (how Flagsmith sends).

A second comparison isolates the transport: ``HttpTransport.send`` of ready-made requests (flaghooks' own
bodies and headers) against the lean ``pool.urlopen`` sending the same bytes, so that what the transport adds
(the SSRF check, the deadline, the response cap) is told apart from encoding and dispatch. A third, ``encode +
send`` (encoding and the transport without the dispatcher), tells the dispatcher's share (routing, the
``Delivery``, signing headers, the result) apart from encoding.

The server shares the two cores with the client, so wall time says little: the comparison is client CPU time
per delivery (``time.process_time``), best of several rounds, interleaved. Wall throughput is printed beside
it. Targets: flaghooks at least 0.9x the hand-written sender's speed and at least 2x requests.post's, and at
most 1.15x the lean urllib3 sender's CPU.

Run: ``python -m pip install -e '.[bench]' && python benchmarks/bench_delivery.py [--events N] [--rounds R]``.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import hmac
import json
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime

import requests
import urllib3

from flaghooks import (
    Endpoint,
    Environment,
    Feature,
    FeatureState,
    Project,
    RetryPolicy,
    WebhookEvent,
    Webhooks,
    __version__,
    encode,
    flag_changed,
)
from flaghooks.transports import DeliveryRequest, HttpTransport

SECRET = "bench-secret"
SERVER = r"""
import http.server, socketserver, sys

class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(204)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass

class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True

server = Server(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
"""


def make_events(n: int) -> list[WebhookEvent]:
    project = Project(12, "Checkout", 7)
    environment = Environment(23, "Production")
    created = datetime(2020, 2, 25, 22, 11, 16, 355547, tzinfo=UTC)
    feature = Feature(id=2411, name="feature_name", project=project, created_date=created, initial_value="red")
    stamp = datetime(2020, 3, 7, 13, 59, 7, 40000, tzinfo=UTC)
    return [
        flag_changed(
            FeatureState(id=10430, feature=feature, environment=environment, enabled=False, value=i),
            FeatureState(id=10430, feature=feature, environment=environment, enabled=True, value=i + 1),
            changed_by="Some User",
            timestamp=stamp,
            event_id=f"evt_bench_{i}",
        )
        for i in range(n)
    ]


def _state(enabled: bool, value: int) -> dict[str, object]:
    return {
        "enabled": enabled,
        "environment": 23,
        "feature": {
            "created_date": "2020-02-25T22:11:16.355547Z",
            "default_enabled": False,
            "description": None,
            "id": 2411,
            "initial_value": "red",
            "name": "feature_name",
            "project": 12,
            "type": "FLAG",
        },
        "feature_segment": None,
        "feature_state_value": value,
        "id": 10430,
        "identity": None,
        "identity_identifier": None,
    }


def make_payloads(n: int) -> list[tuple[str, dict[str, object]]]:
    return [
        (
            f"evt_bench_{i}",
            {
                "data": {
                    "changed_by": "Some User",
                    "new_state": _state(True, i + 1),
                    "previous_state": _state(False, i),
                    "timestamp": "2020-03-07T13:59:07.040Z",
                },
                "event_type": "FLAG_UPDATED",
            },
        )
        for i in range(n)
    ]


def hand_headers(event_id: str, body: bytes, key: bytes) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "User-Agent": f"flaghooks/{__version__}",
        "webhook-id": event_id,
        "webhook-timestamp": str(int(time.time())),
        "X-Flagsmith-Signature": hmac.new(key, body, hashlib.sha256).hexdigest(),
    }


def measure(send_all: Callable[[], int]) -> tuple[float, float, int]:
    gc.collect()
    cpu, wall = time.process_time(), time.perf_counter()
    delivered = send_all()
    return time.process_time() - cpu, time.perf_counter() - wall, delivered


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=150)
    parser.add_argument("--rounds", type=int, default=25)
    args = parser.parse_args()
    n = args.events

    server = subprocess.Popen([sys.executable, "-c", SERVER], stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        url = f"http://127.0.0.1:{server.stdout.readline().strip()}/hook"
        events, payloads, key = make_events(n), make_payloads(n), SECRET.encode()
        webhooks = Webhooks(transport=HttpTransport(allowed_networks=["127.0.0.0/8"]), retry=RetryPolicy.never())
        endpoint = Endpoint(url, secret=SECRET)
        webhooks.subscribe(endpoint, environment=23)
        pool = urllib3.PoolManager()
        parsed = urllib3.util.parse_url(url)
        lean_pool = urllib3.HTTPConnectionPool(parsed.host, parsed.port, maxsize=4)
        path = parsed.request_uri

        def ours() -> int:
            return sum(result.ok for event in events for result in webhooks.publish(event))

        def hand_written() -> int:
            ok = 0
            for event_id, payload in payloads:
                body = json.dumps(payload, sort_keys=True).encode()
                response = pool.request("POST", url, body=body, headers=hand_headers(event_id, body, key))
                ok += 200 <= response.status < 300
            return ok

        def lean_post(body: bytes, headers: dict[str, str]) -> bool:
            """One POST as HttpTransport makes it, without its checks: the floor for what it does."""
            response = lean_pool.urlopen(
                "POST",
                path,
                body=body,
                headers=headers,
                retries=False,
                redirect=False,
                assert_same_host=False,
                timeout=urllib3.Timeout(connect=10.0, read=10.0),
                preload_content=False,
                release_conn=False,
            )
            response.drain_conn()
            response.release_conn()
            return 200 <= response.status < 300

        def lean() -> int:
            ok = 0
            for event_id, payload in payloads:
                body = json.dumps(payload, sort_keys=True).encode()
                ok += lean_post(body, hand_headers(event_id, body, key))
            return ok

        bodies = [encode(event) for event in events]
        ready = [
            DeliveryRequest(url, body, hand_headers(event.id, body, key), 10.0, endpoint, event)
            for event, body in zip(events, bodies, strict=True)
        ]
        transport = HttpTransport(allowed_networks=["127.0.0.0/8"])

        def transport_only() -> int:
            return sum(200 <= (transport.send(request).status or 0) < 300 for request in ready)

        def encode_and_send() -> int:
            # flaghooks' encoding and transport without the dispatcher (routing, Delivery, results): what
            # "flaghooks" costs above this is the dispatcher's share.
            ok = 0
            for event in events:
                body = encode(event)
                request = DeliveryRequest(url, body, hand_headers(event.id, body, key), 10.0, endpoint, event)
                ok += 200 <= (transport.send(request).status or 0) < 300
            return ok

        def lean_same_bytes() -> int:
            return sum(lean_post(request.body, dict(request.headers)) for request in ready)

        def with_requests() -> int:
            ok = 0
            for event_id, payload in payloads:
                body = json.dumps(payload, sort_keys=True).encode()
                response = requests.post(url, data=body, headers=hand_headers(event_id, body, key), timeout=10)
                ok += 200 <= response.status_code < 300
            return ok

        senders = {
            "flaghooks": ours,
            "hand-written urllib3": hand_written,
            "lean urllib3": lean,
            "requests.post": with_requests,
            "HttpTransport.send": transport_only,
            "encode + send": encode_and_send,
            "lean, same bytes": lean_same_bytes,
        }
        # Same bytes on the wire: the benchmark compares like with like.
        if encode(events[0]) != json.dumps(payloads[0][1], sort_keys=True).encode():
            raise SystemExit("the senders would send different bodies; the benchmark is broken")
        for send in senders.values():  # warm up: connections, imports, caches
            send()
        best = {name: (float("inf"), float("inf")) for name in senders}
        for _ in range(args.rounds):
            for name, send in senders.items():
                cpu, wall, delivered = measure(send)
                if delivered != n:
                    raise SystemExit(f"{name} delivered {delivered} of {n}")
                best[name] = (min(best[name][0], cpu), min(best[name][1], wall))
        webhooks.close()
        transport.close()
        lean_pool.close()
    finally:
        server.terminate()
        server.wait()

    print(f"events per round: {n}, rounds: {args.rounds}, best round each")
    for name, (cpu, wall) in best.items():
        print(f"{name:22s} client CPU {cpu / n * 1e6:8.1f} us/delivery   wall {n / wall:8.0f} deliveries/s")
    ours_cpu = best["flaghooks"][0]
    hand = best["hand-written urllib3"][0] / ours_cpu
    via_requests = best["requests.post"][0] / ours_cpu
    print(f"speed vs hand-written urllib3 (their CPU / ours): {hand:.2f}x (target >= 0.90x)")
    print(f"speed vs requests.post (their CPU / ours):        {via_requests:.2f}x (target >= 2.00x)")
    over_lean = ours_cpu / best["lean urllib3"][0]
    print(f"CPU vs lean urllib3 (ours / theirs):              {over_lean:.2f}x (target <= 1.15x)")
    transport_share = best["HttpTransport.send"][0] / best["lean, same bytes"][0]
    print(f"HttpTransport.send alone vs lean, same bytes:     {transport_share:.2f}x (the transport's part)")
    dispatch = (ours_cpu - best["encode + send"][0]) / n * 1e6
    print(f"dispatcher's share (flaghooks - encode + send):   {dispatch:.1f} us/delivery")


if __name__ == "__main__":
    main()
