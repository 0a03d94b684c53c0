"""A transport of your own: deliver web hooks as human-readable chat messages, appended as JSON lines to a
file (the shape a chat service's incoming web hook takes), instead of POSTing the payload.

Run: ``python examples/custom_transport.py [FILE]`` (default: a file in a new temporary folder).
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from flaghooks import (
    Endpoint,
    Environment,
    EventType,
    Feature,
    FeatureState,
    FlagChange,
    Project,
    Webhooks,
)
from flaghooks.transports import AttemptResult, DeliveryRequest, Transport


def render(request: DeliveryRequest) -> str:
    """A message a person wants to read, made from the event's models (not by re-parsing the bytes)."""
    event = request.event
    data = event.data
    if not isinstance(data, FlagChange):
        return f":scroll: audit: {data.log}"
    state = data.new_state or data.previous_state
    assert state is not None
    who = data.changed_by or "someone"
    if event.event_type is EventType.FLAG_DELETED:
        return f":wastebasket: {who} removed *{state.feature.name}* in {state.environment.name}"
    switch = ":large_green_circle: on" if state.enabled else ":red_circle: off"
    value = f" (value {state.value!r})" if state.value is not None else ""
    return f"{switch} *{state.feature.name}* in {state.environment.name}{value}, by {who}"


class ChatLogTransport(Transport):
    """Appends one chat message per delivery to a JSON-lines file. One attempt per send, as every transport."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file = path.open("a", encoding="utf-8")

    def send(self, request: DeliveryRequest) -> AttemptResult:
        started = time.monotonic()
        message = {
            "text": render(request),
            "webhook_id": request.headers["webhook-id"],
            "channel": request.endpoint.label,
        }
        try:
            self._file.write(json.dumps(message, sort_keys=True) + "\n")
            self._file.flush()
        except OSError as error:  # a full disk is worth retrying; report it, don't raise
            return AttemptResult(None, f"cannot write {self.path}: {error}", time.monotonic() - started)
        return AttemptResult(200, None, time.monotonic() - started)

    def close(self) -> None:
        self._file.close()


def main(path: Path) -> None:
    feature = Feature(id=7, name="dark_mode", project=Project(3, "Web"), created_date=datetime(2024, 1, 1, tzinfo=UTC))
    staging = Environment(30, "Staging")
    off = FeatureState(feature=feature, environment=staging, enabled=False)
    on = FeatureState(feature=feature, environment=staging, enabled=True, value="auto")

    with Webhooks(transport=ChatLogTransport(path)) as webhooks:
        # The endpoint's name is the channel each message is for (see "channel" in send). Every Endpoint needs a
        # URL, but this transport never opens it: nothing is sent over the network.
        webhooks.subscribe(Endpoint("https://chat.invalid/hooks/flags", name="#flags"), environment=staging.id)
        for previous, new in ((None, off), (off, on), (on, None)):
            [result] = webhooks.feature_state_changed(previous, new, changed_by="dana@example.com")
            assert result.ok
    print(f"wrote {path}:")
    print(path.read_text(encoding="utf-8"), end="")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp()) / "chat.jsonl")
