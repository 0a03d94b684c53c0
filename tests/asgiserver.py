"""Serve an ASGI application with uvicorn on 127.0.0.1 (an ephemeral port) in a thread, and post to it with urllib3."""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import urllib3


@contextmanager
def uvicorn_server(app: Any, *, lifespan: str = "on") -> Iterator[str]:
    """uvicorn serving ``app`` on 127.0.0.1, port 0; yields its base URL. Stopped (and joined) on exit.

    ``lifespan="on"`` makes uvicorn refuse to start unless the application answers the lifespan protocol."""
    import uvicorn

    config = uvicorn.Config(app, host="127.0.0.1", port=0, http="h11", lifespan=lifespan, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            thread.join(10)
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        assert not thread.is_alive(), "uvicorn did not stop"


def post(
    url: str, body: Any, headers: dict[str, str], *, method: str = "POST", chunked: bool = False
) -> tuple[int, Mapping[str, str], Any]:
    """One request on a fresh connection: (status, headers (case-insensitive), the JSON answer or None)."""
    with urllib3.PoolManager(retries=False, timeout=10) as http:
        response = http.request(method, url, body=body, headers=headers, chunked=chunked)
        data = response.data
        return response.status, response.headers, json.loads(data) if data else None


def raw_exchange(url: str, request: bytes) -> bytes:
    """Send ``request`` as is on a raw socket and return the answer: its head and as much body as its
    Content-Length says (the server may answer before the request is complete: that is what this shows)."""
    host, port = url.removeprefix("http://").split("/")[0].split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(request)
        answer = b""
        while True:
            head, _, body = answer.partition(b"\r\n\r\n")
            length = re.search(rb"(?im)^content-length: *(\d+)", head)
            if _ and length and len(body) >= int(length.group(1)):
                return answer
            chunk = sock.recv(65536)
            if not chunk:
                return answer
            answer += chunk
