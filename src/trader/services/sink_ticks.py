"""sink-ticks: every valid tick into the Delta table ``market_ticks``, exactly once.

Consumes: ``market.tick.>`` (stream MARKET_TICKS). Produces: ``<lake_root>/market_ticks``, partitioned
by ``symbol`` and ``dt`` (UTC date of the event); refused ticks on the dead letters.
"""

from __future__ import annotations

import pyarrow as pa

from trader.marketdata.decode import decode_tick
from trader.messages import MarketTick
from trader.services.lake_sink import LakeSink, Row, decimals
from trader.stores.lake import MARKET_TICKS, PRICE, QUANTITY, TIMESTAMP, utc_dates


class SinkTicks(LakeSink):
    name = "sink-ticks"
    table = MARKET_TICKS
    stream = "MARKET_TICKS"
    message = MarketTick
    subject = "market.tick.>"

    def decode(self, data: bytes) -> MarketTick:
        return decode_tick(data)

    def to_arrow(self, rows: list[Row]) -> pa.Table:
        ticks = [t for _, t in rows]
        ts = pa.array([t.timestamp for t in ticks], pa.int64())
        columns = {
            "ts": ts.cast(TIMESTAMP),
            "ingest_ts": pa.array([d.arrival_ms for d, _ in rows], pa.int64()).cast(TIMESTAMP),
            "exchange": pa.array([t.exchange for t in ticks], pa.string()),
            "venue": pa.array([t.venue for t in ticks], pa.string()),
            "symbol": pa.array([t.symbol for t in ticks], pa.string()),
            "price": decimals([t.price for t in ticks], PRICE),
            "size": decimals([t.size for t in ticks], QUANTITY),
            "volume": decimals([t.volume for t in ticks], QUANTITY),
            "bid": decimals([t.bid for t in ticks], PRICE),
            "ask": decimals([t.ask for t in ticks], PRICE),
            "side": pa.array([t.side for t in ticks], pa.string()),
            "trade_id": pa.array([t.trade_id for t in ticks], pa.string()),
            "source_seq": pa.array([t.source_seq for t in ticks], pa.int64()),
            "stream_seq": pa.array([d.seq for d, _ in rows], pa.int64()),
            "dt": utc_dates(ts),
        }
        return pa.Table.from_pydict(columns, schema=self.table.schema)


SERVICE = SinkTicks
