"""The shared trading switch on the bus: a ``TradingState`` under ``TRADING_STATE_KEY`` in the
``TRADER_STATE`` bucket, read, written (unconditionally, or only from a mode) and watched.

``active`` lets orders through, ``reduce_only`` only those that shrink a position, ``halted`` none (and
the oms cancels every open order): risk's checks (``trader.risk.checks``) apply it. A missing key means
active. A service follows it with ``trader.runtime.trading_switch.follow_state``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import msgspec
from nats.js import JetStreamContext
from nats.js.errors import KeyWrongLastSequenceError, NotFoundError
from nats.js.kv import KeyValue

from trader.bus.streams import STATE_BUCKET, TRADING_STATE_KEY, ensure_state_bucket
from trader.messages import TradingState, encode

_decoder = msgspec.json.Decoder(TradingState)

# What a value that cannot be decoded counts as (given the error and the entry's revision); without
# one, reading it raises.
Unreadable = Callable[[msgspec.DecodeError, int | None], TradingState]


async def state_bucket(js: JetStreamContext) -> KeyValue:
    await ensure_state_bucket(js)
    return await js.key_value(STATE_BUCKET)


def decode_state(
    value: bytes | None, *, unreadable: Unreadable | None = None, revision: int | None = None
) -> TradingState:
    """An entry's value; an empty or deleted one means active."""
    try:
        return _decoder.decode(value) if value else TradingState()
    except msgspec.DecodeError as exc:
        if unreadable is None:
            raise
        return unreadable(exc, revision)


async def read_state(kv: KeyValue, *, unreadable: Unreadable | None = None) -> tuple[TradingState, int]:
    """The current state and its revision (0 when the key was never written)."""
    try:
        entry = await kv.get(TRADING_STATE_KEY)
    except NotFoundError:  # never written, or deleted: active
        return TradingState(), 0
    return decode_state(entry.value, unreadable=unreadable, revision=entry.revision), entry.revision or 0


async def write_state(kv: KeyValue, state: TradingState) -> int:
    """Set the state unconditionally (the operator's switch); returns the new revision."""
    return await kv.put(TRADING_STATE_KEY, encode(state))


async def write_state_if(kv: KeyValue, state: TradingState, *, only_from: str) -> bool:
    """Set the state only while the current mode is ``only_from`` (compare-and-set on the revision), so
    an automatic switch never overrides an operator's: ``False`` when the mode was something else."""
    while True:
        current, revision = await read_state(kv)
        if current.mode != only_from:
            return False
        try:
            if revision:
                await kv.update(TRADING_STATE_KEY, encode(state), last=revision)
            else:
                await kv.create(TRADING_STATE_KEY, encode(state))
            return True
        except KeyWrongLastSequenceError:
            continue  # written meanwhile: look again


async def watch_state(kv: KeyValue, *, unreadable: Unreadable | None = None) -> AsyncIterator[TradingState]:
    """The current state, then every change as it is written."""
    watcher = await kv.watch(TRADING_STATE_KEY)
    delivered = False
    try:
        async for entry in watcher:
            if entry is None:  # the marker after the initial value: the key was never written
                if not delivered:
                    delivered = True
                    yield TradingState()
                continue
            delivered = True
            value = entry.value if entry.operation is None else None
            yield decode_state(value, unreadable=unreadable, revision=entry.revision)
    finally:
        await watcher.stop()
