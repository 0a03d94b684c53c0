"""flaghooks.testing.RecordingTransport: a scriptable stand-in for HttpTransport."""

from __future__ import annotations

import pytest

from cases import documented_flag_event
from flaghooks import Endpoint
from flaghooks.testing import RecordingTransport
from flaghooks.transports import AttemptResult, DeliveryRequest, Transport


def request(attempt: int = 1) -> DeliveryRequest:
    return DeliveryRequest(
        "https://a.example/", b"{}", {}, 1.0, Endpoint("https://a.example/"), documented_flag_event(), attempt
    )


def test_records_and_answers_200_by_default() -> None:
    """Without outcomes every request is answered 200, and recorded."""
    transport = RecordingTransport()
    assert isinstance(transport, Transport)
    assert transport.send(request()).status == 200
    assert transport.requests == [request()]


def test_outcomes_in_order_then_200() -> None:
    """Listed outcomes are used in order, statuses or AttemptResults, then 200."""
    custom = AttemptResult(None, "connection refused", 0.1)
    transport = RecordingTransport([503, custom])
    assert [transport.send(request()) for _ in range(3)] == [
        AttemptResult(503, None, 0.0),
        custom,
        AttemptResult(200, None, 0.0),
    ]


def test_callable_outcomes() -> None:
    """A callable decides from the request."""
    transport = RecordingTransport(lambda r: 500 if r.attempt == 1 else 204)
    assert [transport.send(request(n)).status for n in (1, 2)] == [500, 204]


@pytest.mark.parametrize("bad", [True, 99, 600, "200", None])
def test_bad_outcomes(bad: object) -> None:
    """Outcomes are statuses from 100 to 599 or AttemptResults."""
    with pytest.raises(TypeError, match="outcome"):
        RecordingTransport([bad])  # type: ignore[list-item]
    with pytest.raises(TypeError, match="outcome"):
        RecordingTransport(lambda r: bad).send(request())  # type: ignore[arg-type,return-value]


def test_closed() -> None:
    """closed tells whether close() was called (a with block closes)."""
    with RecordingTransport() as transport:
        assert not transport.closed  # type: ignore[attr-defined]
    assert transport.closed  # type: ignore[attr-defined]
