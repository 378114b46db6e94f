"""Dead letters: a refused message, kept whole, with who refused it and why.

The dead letter's payload is the original bytes unchanged; its headers are the original headers
(the original ``Nats-Msg-Id`` kept under ``Trader-Dlq-Msg-Id``, so the dead letter is not mistaken
for a duplicate of the original) plus the ``Trader-Dlq-*`` headers below.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from trader.bus.publish import MSG_ID, Outgoing, publish_batch
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


# Reading and replaying (the CLI's `trader dlq` and the api's /api/dlq) ----------------------------


async def read_dead_letters(js: JetStreamContext, service: str | None, limit: int) -> list[dict[str, Any]]:
    """Dead letters, newest first (at most ``limit``; only ``service``'s when given): who refused what,
    why, and the original bytes and headers."""
    state = (await js.stream_info("DLQ")).state
    letters: list[dict[str, Any]] = []
    seq = state.last_seq
    while seq >= state.first_seq and len(letters) < limit and state.messages:
        try:
            msg = await js.get_msg("DLQ", seq=seq)
        except NotFoundError:  # deleted (replayed) or aged out
            seq -= 1
            continue
        seq -= 1
        headers = msg.headers or {}
        if service is not None and headers.get(SERVICE) != service:
            continue
        letters.append(
            {
                "dlq_seq": msg.seq,
                "refused_at": datetime.fromtimestamp(int(headers.get(REFUSED_AT, "0")) / 1000, UTC),
                "service": headers.get(SERVICE),
                "subject": headers.get(SUBJECT),
                "stream": headers.get(STREAM),
                "stream_seq": int(headers[STREAM_SEQ]) if STREAM_SEQ in headers else None,
                "reason": headers.get(REASON),
                "data": msg.data or b"",
                "headers": headers,
            }
        )
    return letters


def replay_groups(
    letters: list[dict[str, Any]], reason: str | None, include_late: bool
) -> dict[tuple[Any, ...], list[dict[str, Any]]]:
    """The dead letters to replay (reason containing ``reason``; late ticks only with ``include_late``:
    the sinks stored them already), grouped by the message they refused: one original, one replay."""
    chosen = [
        x
        for x in letters
        if (reason is None or reason in (x["reason"] or ""))
        and (include_late or not (x["reason"] or "").startswith("late"))
    ]
    originals: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for x in chosen:
        key = (x["stream"], x["stream_seq"]) if x["stream_seq"] is not None else ("dlq", x["dlq_seq"])
        originals.setdefault(key, []).append(x)
    return originals


async def replay_dead_letters(
    js: JetStreamContext, originals: dict[tuple[Any, ...], list[dict[str, Any]]]
) -> int:
    """Publish each original again on its subject (``Nats-Msg-Id`` ``replay:<stream>:<seq>``: a replay
    repeated is stored once), then remove its dead letters. Returns how many were published."""
    items = []
    for key, group in originals.items():
        first = group[0]
        headers = {k: v for k, v in first["headers"].items() if not k.startswith("Trader-Dlq-")}
        headers["Trader-Replay-Of"] = f"{key[0]}:{key[1]}"
        items.append(
            Outgoing(first["subject"], first["data"], msg_id=f"replay:{key[0]}:{key[1]}", headers=headers)
        )
    result = await publish_batch(js, items)
    if result.failed:
        raise RuntimeError(f"{len(result.failed)} not published: {result.errors[:3]}")
    for group in originals.values():
        for x in group:
            await js.delete_msg("DLQ", x["dlq_seq"])
    return len(items)
