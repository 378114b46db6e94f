"""Dead letters: a refused message, kept whole, with who refused it and why.

The dead letter's payload is the original bytes unchanged; its headers are the original headers
(the original ``Nats-Msg-Id`` kept under ``Trader-Dlq-Msg-Id``, so the dead letter is not mistaken
for a duplicate of the original) plus the ``Trader-Dlq-*`` headers below.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

from trader.bus.publish import MSG_ID, Outgoing
from trader.bus.streams import dlq_subject

REASON = "Trader-Dlq-Reason"
SERVICE = "Trader-Dlq-Service"
SUBJECT = "Trader-Dlq-Subject"
STREAM = "Trader-Dlq-Stream"
STREAM_SEQ = "Trader-Dlq-Stream-Seq"
REFUSED_AT = "Trader-Dlq-Time"
ORIGINAL_MSG_ID = "Trader-Dlq-Msg-Id"


def dead_letter(
    *,
    service: str,
    subject: str,
    data: bytes,
    headers: Mapping[str, str] | None,
    reason: str,
    stream: str | None = None,
    stream_seq: int | None = None,
) -> Outgoing:
    """The message that carries one refused message to the DLQ stream."""
    out = {k: v for k, v in (headers or {}).items() if k != MSG_ID}
    if headers and MSG_ID in headers:
        out[ORIGINAL_MSG_ID] = headers[MSG_ID]
    # Header values are single lines: a reason with newlines would corrupt the header block.
    out[REASON] = " ".join(reason.split())[:1000]
    out[SERVICE] = service
    out[SUBJECT] = subject
    out[REFUSED_AT] = str(time.time_ns() // 1_000_000)
    msg_id = None
    if stream is not None and stream_seq is not None:
        out[STREAM] = stream
        out[STREAM_SEQ] = str(stream_seq)
        msg_id = f"{service}:{stream}:{stream_seq}"  # refusing the same stored message twice stores one
    return Outgoing(dlq_subject(service, subject), bytes(data), msg_id=msg_id, headers=out)
