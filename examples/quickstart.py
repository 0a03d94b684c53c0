"""Build Flagsmith's documented FLAG_UPDATED change from models, then print the exact body and its signature.

Run: ``python examples/quickstart.py [SECRET]``. The body is byte for byte what Flagsmith documents for this
change; the signature is the ``X-Flagsmith-Signature`` a receiver holding SECRET would check.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime

from flaghooks import (
    Environment,
    Feature,
    FeatureState,
    PayloadFormat,
    Project,
    decode,
    diff_states,
    encode,
    flag_changed,
    sign_flagsmith,
    verify_flagsmith,
)


def main(secret: str = "some-secret") -> None:
    project = Project(12)
    production = Environment(23)
    created = datetime(2020, 2, 25, 22, 11, 16, 355547, tzinfo=UTC)

    def feature(initial_value: str) -> Feature:
        return Feature(id=2411, name="feature_name", project=project, created_date=created, initial_value=initial_value)

    # The documented change: the flag was switched on, and its initial value went from red to blue.
    before = FeatureState(id=10430, feature=feature("red"), environment=production, enabled=False)
    after = FeatureState(id=10430, feature=feature("blue"), environment=production, enabled=True)
    print("changed:", ", ".join(sorted(diff_states(before, after).changed)))

    event = flag_changed(
        before,
        after,
        changed_by="Some User",
        timestamp=datetime(2020, 3, 7, 13, 59, 7, 40000, tzinfo=UTC),
    )
    body = encode(event, PayloadFormat.CLASSIC)
    signature = sign_flagsmith(body, secret)
    print("event:", event.event_type, event.id)
    print("body:", body.decode())
    print("X-Flagsmith-Signature:", signature)

    # The receiving end: verify the raw bytes, then decode them back into the same models.
    verify_flagsmith(body, signature, secret)
    received = decode(body, event_id=event.id)
    if received != event:
        raise SystemExit("the decoded event differs from the one sent")
    print("verified and decoded: same event")


if __name__ == "__main__":
    main(*sys.argv[1:2])
