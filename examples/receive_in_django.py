"""Receive flaghooks (or Flagsmith) web hooks in a Django project: a view that hands the request to
``WebhookReceiver.handle`` and writes out its answer.

In a project, the recipe goes in an app's ``views.py`` and ``urls.py`` (see docs/receiving.md, "Frameworks"):

    receiver = WebhookReceiver(standard_secrets=settings.FLAGHOOKS_SECRET, cache=cache)
    urlpatterns = [path("hooks/flagsmith", flagsmith_webhook_view(receiver))]

Run: ``python examples/receive_in_django.py``: it configures a minimal Django, serves it on 127.0.0.1 and sends
itself a genuine change, the same change again and a tampered copy.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

from _delivery_tour import deliver
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt

from flaghooks import WebhookEvent, generate_secret
from flaghooks.receiver import FlagCache, WebhookReceiver


def flagsmith_webhook_view(receiver: WebhookReceiver) -> Callable[[HttpRequest], HttpResponse]:
    """A Django view answering web hooks with ``receiver``: route it with ``path("hooks/flagsmith", view)``."""

    @csrf_exempt  # the sender signs its requests instead: it has no CSRF token
    def flagsmith_webhook(request: HttpRequest) -> HttpResponse:
        # request.body is the raw bytes, as signed. Django reads at most DATA_UPLOAD_MAX_MEMORY_SIZE (2.5 MB by
        # default) of it: above that it answers 400 itself; the receiver answers 413 above max_body_bytes.
        answer = receiver.handle(request.method or "", request.headers, request.body)
        return HttpResponse(answer.body, status=answer.status, headers=answer.headers)

    return flagsmith_webhook


# --- the tour: a minimal Django serving the view, and a sender ------------------------------------------------


class QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


urlpatterns: list[Any] = []  # this module is the tour's ROOT_URLCONF


def tour() -> None:
    import django
    from django.conf import settings
    from django.core.handlers.wsgi import WSGIHandler
    from django.urls import path

    settings.configure(ROOT_URLCONF=__name__, ALLOWED_HOSTS=["127.0.0.1"], SECRET_KEY="tour-only")  # noqa: S106
    django.setup()
    secret, cache, handled = generate_secret(), FlagCache(), list[WebhookEvent]()
    receiver = WebhookReceiver(standard_secrets=secret, cache=cache, on_event=handled.append)
    urlpatterns.append(path("hooks/flagsmith", flagsmith_webhook_view(receiver)))
    server = make_server("127.0.0.1", 0, WSGIHandler(), handler_class=QuietHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        deliver(f"http://127.0.0.1:{server.server_port}/hooks/flagsmith", secret, cache, handled)
    finally:
        server.shutdown()
        server.server_close()


if __name__ == "__main__":
    tour()
