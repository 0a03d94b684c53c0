"""The framework recipes of docs/receiving.md, as shipped in examples/receive_in_*.py, tested with each framework:
genuine deliveries 2xx, tampered 401, the cache updated (and on_event run) once, and each one's size limit.

Django through its test Client and behind wsgiref; Flask through its test client and behind werkzeug's server;
FastAPI (mounted receiver and route) behind uvicorn; the WSGI dispatcher behind wsgiref. Clients are urllib3.
"""

from __future__ import annotations

import importlib.util
import re
import sys
import threading
import time
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import urllib3

from asgiserver import post, raw_exchange, uvicorn_server
from cases import ROOT, vector_bytes
from flaghooks import WebhookEvent, generate_secret, sign_standard
from flaghooks.receiver import AsgiWebhookReceiver, FlagCache, WebhookReceiver

STANDARD = generate_secret()
BODY = vector_bytes("flag_updated.classic.json")


def recipe(name: str) -> types.ModuleType:
    """examples/<name>.py, imported (its tour does not run)."""
    sys.path.insert(0, str(ROOT / "examples"))  # where its helper module is
    try:
        spec = importlib.util.spec_from_file_location(f"recipe_{name}", ROOT / "examples" / f"{name}.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(ROOT / "examples"))


def signed(msg_id: str, body: bytes = BODY) -> dict[str, str]:
    stamp = int(time.time())
    signature = sign_standard(body, secret=STANDARD, msg_id=msg_id, timestamp=stamp)
    return {"webhook-id": msg_id, "webhook-timestamp": str(stamp), "webhook-signature": signature}


class Handled:
    """A receiver's cache and on_event calls, for the checks every recipe shares."""

    def __init__(self, **kwargs: Any) -> None:
        self.cache = FlagCache()
        self.events: list[str] = []
        self.kwargs = {"standard_secrets": STANDARD, "cache": self.cache, "on_event": self.note, **kwargs}

    def note(self, event: WebhookEvent) -> None:
        self.events.append(event.id)

    def wsgi(self) -> WebhookReceiver:
        return WebhookReceiver(**self.kwargs)

    def asgi(self) -> AsgiWebhookReceiver:
        return AsgiWebhookReceiver(**self.kwargs)

    def check(self, send: Callable[[bytes, dict[str, str]], tuple[int, Any]]) -> None:
        """Genuine: 200; the same again: 200 duplicate; tampered: 401; the cache and on_event once."""
        status, answer = send(BODY, signed("msg_1"))
        assert (status, answer) == (200, {"duplicate": False, "event_id": "msg_1"})
        status, answer = send(BODY, signed("msg_1"))
        assert (status, answer) == (200, {"duplicate": True, "event_id": "msg_1"})
        status, answer = send(BODY.replace(b"true", b"false"), signed("msg_2"))
        assert status == 401 and "matches the body" in answer["error"]
        assert self.events == ["msg_1"] and len(self.cache) == 1 and self.cache.is_enabled(23, 2411)


def via_urllib3(url: str) -> Callable[[bytes, dict[str, str]], tuple[int, Any]]:
    def send(body: bytes, headers: dict[str, str]) -> tuple[int, Any]:
        status, _, answer = post(url, body, {**headers, "Content-Type": "application/json"})
        return status, answer

    return send


# --- Django ----------------------------------------------------------------------------------------------------


@pytest.fixture
def django_site() -> Iterator[Callable[..., Any]]:
    """Django configured in the test: site(receiver, **settings) routes /hooks/flagsmith to the recipe's view with
    those settings in force until the test ends."""
    import django
    from django.conf import settings
    from django.test.utils import override_settings
    from django.urls import path

    if not settings.configured:
        settings.configure()
    django.setup()
    view_for = recipe("receive_in_django").flagsmith_webhook_view
    urls = types.ModuleType("flaghooks_test_django_urls")
    sys.modules[urls.__name__] = urls
    overrides: list[Any] = []

    def site(receiver: WebhookReceiver, **extra: Any) -> None:
        urls.urlpatterns = [path("hooks/flagsmith", view_for(receiver))]  # type: ignore[attr-defined]
        override = override_settings(
            ROOT_URLCONF=urls.__name__, ALLOWED_HOSTS=["testserver", "127.0.0.1"], DEBUG=False, **extra
        )
        override.enable()
        overrides.append(override)

    yield site
    for override in reversed(overrides):
        override.disable()
    del sys.modules[urls.__name__]


class TestDjango:
    def test_test_client(self, django_site: Any) -> None:
        """Through Django's test Client (CSRF checks on): genuine 200, duplicate 200, tampered 401, once."""
        from django.test import Client

        handled = Handled()
        django_site(handled.wsgi(), MIDDLEWARE=["django.middleware.csrf.CsrfViewMiddleware"])
        client = Client(enforce_csrf_checks=True)

        def send(body: bytes, headers: dict[str, str]) -> tuple[int, Any]:
            response = client.post("/hooks/flagsmith", data=body, content_type="application/json", headers=headers)
            return response.status_code, response.json()

        handled.check(send)
        response = client.get("/hooks/flagsmith")
        assert response.status_code == 405 and response["Allow"] == "POST"

    def test_behind_a_real_server(self, django_site: Any, serve: Any) -> None:
        """Django's WSGI handler behind wsgiref, urllib3 as the client: the same answers."""
        from django.core.handlers.wsgi import WSGIHandler

        handled = Handled()
        django_site(handled.wsgi())
        handled.check(via_urllib3(f"http://{serve(WSGIHandler())}/hooks/flagsmith"))

    def test_size_limits(self, django_site: Any) -> None:
        """Over max_body_bytes the receiver answers 413; over DATA_UPLOAD_MAX_MEMORY_SIZE Django answers 400
        before the view runs. Neither touches the cache."""
        from django.test import Client

        handled = Handled(max_body_bytes=2000)
        django_site(handled.wsgi(), DATA_UPLOAD_MAX_MEMORY_SIZE=4000)
        client = Client()
        for size, status in ((3000, 413), (5000, 400)):
            body = b" " * size
            response = client.post("/hooks/flagsmith", data=body, content_type="application/json", headers=signed("m"))
            assert response.status_code == status
        assert len(handled.cache) == 0 and handled.events == []


# --- Flask -----------------------------------------------------------------------------------------------------


def flask_app(receiver: WebhookReceiver) -> Any:
    from flask import Flask

    app = Flask("flaghooks_test_flask")
    recipe("receive_in_flask").add_flagsmith_webhook(app, receiver)
    return app


class TestFlask:
    def test_test_client(self) -> None:
        """Through Flask's test client: genuine 200, duplicate 200, tampered 401, once; other methods 405."""
        handled = Handled()
        client = flask_app(handled.wsgi()).test_client()

        def send(body: bytes, headers: dict[str, str]) -> tuple[int, Any]:
            response = client.post("/hooks/flagsmith", data=body, headers=headers, content_type="application/json")
            return response.status_code, response.get_json()

        handled.check(send)
        assert client.get("/hooks/flagsmith").status_code == 405

    def test_behind_a_real_server(self) -> None:
        """Behind werkzeug's threaded server: the same answers; a chunked body over the limit is 413 (the
        per-request max_content_length), and so is a declared one, without reading it."""
        from werkzeug.serving import make_server

        handled = Handled(max_body_bytes=3000)
        server = make_server("127.0.0.1", 0, flask_app(handled.wsgi()), threaded=True)
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
        thread.start()
        try:
            url = f"http://127.0.0.1:{server.server_port}/hooks/flagsmith"
            handled.check(via_urllib3(url))
            chunks = iter([b" " * 2000, b" " * 2000])
            assert post(url, chunks, signed("m3"), chunked=True)[0] == 413
            head = b"POST /hooks/flagsmith HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000000\r\n\r\n"
            assert re.match(rb"HTTP/1\.[01] 413", raw_exchange(url, head))
        finally:
            server.shutdown()
            server.server_close()
            thread.join(10)
        assert handled.events == ["msg_1"]


# --- FastAPI ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("way", ["mount_flagsmith_webhook", "route_flagsmith_webhook"])
class TestFastApi:
    def serve(self, way: str, handled: Handled) -> Any:
        from fastapi import FastAPI

        app = FastAPI()
        getattr(recipe("receive_in_fastapi"), way)(app, handled.asgi())
        return uvicorn_server(app)

    def test_under_uvicorn(self, way: str) -> None:
        """Mounted receiver and route alike, behind uvicorn: genuine 200, duplicate 200, tampered 401, once."""
        handled = Handled()
        with self.serve(way, handled) as base:
            handled.check(via_urllib3(base + "/hooks/flagsmith"))

    def test_size_limit(self, way: str) -> None:
        """A declared length over the limit is 413 before the body is read, and a chunked body is 413 as soon as
        it passes the limit (its end never sent)."""
        handled = Handled(max_body_bytes=3000)
        with self.serve(way, handled) as base:
            head = b"POST /hooks/flagsmith HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            assert raw_exchange(base, head + b"Content-Length: 1000000000\r\n\r\n").startswith(b"HTTP/1.1 413")
            chunk = b"%x\r\n%s\r\n" % (2000, b" " * 2000)
            answer = raw_exchange(base, head + b"Transfer-Encoding: chunked\r\n\r\n" + chunk * 2)
            assert answer.startswith(b"HTTP/1.1 413")
        assert handled.events == []


# --- a WebhookReceiver under an existing WSGI application -------------------------------------------------------


class TestWsgiMount:
    def test_under_a_prefix(self, serve: Any) -> None:
        """Under /hooks/flagsmith of another app behind wsgiref: the receiver's answers there, the app's
        elsewhere (a longer name that only starts with the prefix included)."""
        handled = Handled()
        module = recipe("receive_in_wsgi_app")
        address = serve(module.mount(module.existing_app, "/hooks/flagsmith", handled.wsgi()))
        handled.check(via_urllib3(f"http://{address}/hooks/flagsmith"))
        assert post(f"http://{address}/hooks/flagsmith/sub", BODY, signed("msg_1"))[2]["duplicate"] is True
        with urllib3.PoolManager() as http:
            for path in ("/", "/hooks/flagsmithy", "/hooks"):
                assert http.request("GET", f"http://{address}{path}").data == b"the rest of the site\n"

    def test_the_receiver_sees_a_mounted_environ(self) -> None:
        """The prefix moves from PATH_INFO to SCRIPT_NAME, as a mounted WSGI application expects."""
        seen: list[tuple[str, str]] = []

        def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
            seen.append((environ["SCRIPT_NAME"], environ["PATH_INFO"]))
            start_response("200 OK", [])
            return [b""]

        module = recipe("receive_in_wsgi_app")
        dispatch = module.mount(module.existing_app, "/hooks", app)
        dispatch({"SCRIPT_NAME": "/site", "PATH_INFO": "/hooks/flagsmith"}, lambda *a: None)
        assert seen == [("/site/hooks", "/flagsmith")]


def test_docs_show_the_recipes_as_shipped() -> None:
    """Each recipe docs/receiving.md shows (its ```py blocks) is, line for line, in an example file that runs."""
    page = (ROOT / "docs" / "receiving.md").read_text(encoding="utf-8")
    blocks = re.findall(r"^```py\n(.*?)^```", page, re.DOTALL | re.MULTILINE)
    assert len(blocks) >= 4
    sources = {path.name: path.read_text(encoding="utf-8") for path in Path(ROOT / "examples").glob("receive_in_*.py")}
    for block in blocks:
        assert any(block in source for source in sources.values()), block
