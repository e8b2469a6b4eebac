"""The notifier's handler: POST an ended job's record to its webhook, signed."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TypeVar

from anchorline.errors import Permanent
from anchorline.events import Event, NotifyRequested, Stage, refs_of
from anchorline.stream.stage import Report
from anchorline_notifier.sender import Sender, shown
from anchorline_notifier.signing import signed_headers

ANY = "*"
T = TypeVar("T")


def message_id(event: NotifyRequested) -> str:
    """The same for every attempt at one run's notification, as the receiver's dedup key."""
    return f"msg_{event.job_id}_{event.generation}"


def payload(event: NotifyRequested) -> bytes:
    """The Standard Webhooks payload: `type`, `timestamp` and the job record as `data`."""
    document = {
        "type": f"job.{event.state}",
        "timestamp": event.finished_at.isoformat(),
        "data": json.loads(event.record),
    }
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()


class NotifyHandler:
    """Consumes NotifyRequested; each delivery is a `notify` status in the job's history (a
    failed one is the runner's retrying, failed or dead status with the reason)."""

    stage = Stage.NOTIFY
    consumes = NotifyRequested
    batched = False

    def __init__(
        self,
        sender: Sender,
        *,
        urls: Mapping[str, str],
        secrets: Mapping[str, bytes],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.sender = sender
        self.urls = urls
        self.secrets = secrets
        self.clock = clock

    def handle(self, events: Sequence[NotifyRequested], report: Report) -> list[Event]:
        out: list[Event] = []
        for event in events:
            url = event.callback_url or self._of(self.urls, event.tenant)
            if url is None:
                continue  # no hook for this job, nor a default for its tenant
            key = self._of(self.secrets, event.tenant)
            if key is None:
                raise Permanent(f"no webhook secret for tenant {event.tenant or ANY!r}")
            body = payload(event)
            signed = signed_headers(
                key, message_id=message_id(event), timestamp=int(self.clock()), body=body
            )
            status = self.sender.post(url, body, signed)
            (ref,) = refs_of(event)
            note = f"webhook delivered to {shown(url)}: HTTP {status}"
            out.append(ref.status(Stage.NOTIFY, event.state, note=note))
        return out

    @staticmethod
    def _of(values: Mapping[str, T], tenant: str | None) -> T | None:
        """The tenant's own value, else the one for any tenant."""
        return values.get(tenant or ANY, values.get(ANY))
