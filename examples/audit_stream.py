"""Stream an organisation's audit log to an endpoint: AUDIT_LOG_CREATED web hooks, signed the Standard Webhooks
way, received by a small collector on this machine.

Run: ``python examples/audit_stream.py``.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from wsgiref.simple_server import WSGIRequestHandler, make_server

from flaghooks import (
    AuditLogEntry,
    Author,
    Endpoint,
    Environment,
    Project,
    Signing,
    WebhookEvent,
    Webhooks,
    generate_secret,
)
from flaghooks.receiver import WebhookReceiver
from flaghooks.transports import HttpTransport


class QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


def main() -> None:
    secret = generate_secret()
    collected: list[WebhookEvent] = []
    collector = WebhookReceiver(standard_secrets=secret, on_event=collected.append)
    server = make_server("127.0.0.1", 0, collector, handler_class=QuietHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()

    organisation = 42
    project = Project(8, "Mobile app", organisation=organisation)
    dana = Author(3, "dana@example.com", "Dana", "Admin")
    start = datetime(2024, 6, 1, 9, 0, tzinfo=UTC)
    entries = [
        AuditLogEntry(
            created_date=start,
            log="New Flag / Remote Config created: offline_mode",
            related_object_type="FEATURE",
            related_object_id=51,
            author=dana,
            project=project,
        ),
        AuditLogEntry(
            created_date=start + timedelta(minutes=5),
            log="Flag state updated for feature: offline_mode",
            related_object_type="FEATURE_STATE",
            related_object_id=901,
            author=dana,
            project=project,
            environment=Environment(12, "Production"),
        ),
        AuditLogEntry(
            created_date=start + timedelta(minutes=9),
            log="Segment created: tablet_users",
            related_object_type="SEGMENT",
            related_object_id=77,
            author=None,
            project=project,
            is_system_event=True,
        ),
    ]

    with Webhooks(transport=HttpTransport(allowed_networks=["127.0.0.0/8"])) as webhooks:
        audit = Endpoint(
            f"http://127.0.0.1:{server.server_port}/audit",
            secret=secret,
            signing=Signing.STANDARD,
            events={"AUDIT_LOG_CREATED"},
            name="audit collector",
        )
        webhooks.subscribe(audit, organisation=organisation)
        results = [result for entry in entries for result in webhooks.audit_log_created(entry)]
    server.shutdown()
    server.server_close()

    print(f"{sum(r.ok for r in results)} of {len(entries)} audit entries delivered and verified:")
    for event in collected:
        entry = event.data
        assert isinstance(entry, AuditLogEntry)
        who = entry.author.email if entry.author else "system"
        print(f"  {entry.created_date:%Y-%m-%d %H:%M} {who:<18} {entry.related_object_type:<14} {entry.log}")
    if len(collected) != len(entries):
        raise SystemExit("some audit entries did not arrive")


if __name__ == "__main__":
    main()
