"""sink-features: feature-eng's features into the Delta table ``features``, exactly once.

Consumes: ``market.feature.>`` (stream FEATURES). Produces: ``<lake_root>/features``, one row per (bar,
feature) with a value (``trader.stores.lake.FEATURES``), partitioned by ``symbol`` and ``dt`` (the UTC
date of the bar); refused messages on the dead letters. Exactly once as every lake sink
(``trader.services.lake_sink``): the FEATURES sequence of each batch is committed with it. A sink of
its own, not feature-eng itself: that exactly-once needs one writer reading one stream in order, and
feature-eng, which publishes after a restart the features of the bars it missed, is not one; a Delta
commit per feature-eng batch would also make the small files the sinks' batching avoids.
"""

from __future__ import annotations

import msgspec
import pyarrow as pa

from trader.bus.read import decode_message
from trader.messages import Features
from trader.services.lake_sink import LakeSink, Row
from trader.stores.lake import FEATURES, TIMESTAMP, utc_dates

_decoder = msgspec.json.Decoder(Features)


class SinkFeatures(LakeSink):
    name = "sink-features"
    table = FEATURES
    stream = "FEATURES"
    message = Features
    subject = "market.feature.>"

    def decode(self, data: bytes) -> Features:
        return decode_message(_decoder, data)

    def to_arrow(self, rows: list[Row]) -> pa.Table:
        ts, ingest, venue, symbol, timeframe, feature, value, bars, seq = ([] for _ in range(9))
        for d, f in rows:
            for name, v in f.values.items():
                if v is None:
                    continue
                ts.append(f.start)
                ingest.append(d.arrival_ms)
                venue.append(f.venue)
                symbol.append(f.symbol)
                timeframe.append(f.timeframe)
                feature.append(name)
                value.append(v)
                bars.append(f.bars)
                seq.append(d.seq)
        starts = pa.array(ts, pa.int64())
        columns = {
            "ts": starts.cast(TIMESTAMP),
            "ingest_ts": pa.array(ingest, pa.int64()).cast(TIMESTAMP),
            "venue": pa.array(venue, pa.string()),
            "symbol": pa.array(symbol, pa.string()),
            "timeframe": pa.array(timeframe, pa.string()),
            "feature": pa.array(feature, pa.string()),
            "value": pa.array(value, pa.float64()),
            "bars": pa.array(bars, pa.int64()),
            "stream_seq": pa.array(seq, pa.int64()),
            "dt": utc_dates(starts),
        }
        return pa.Table.from_pydict(columns, schema=self.table.schema)


SERVICE = SinkFeatures
