"""sink-alt: alternative data into the Delta table ``alt_data``, exactly once.

Consumes: ``alt.norm.>`` (stream ALT_DATA). Produces: ``<lake_root>/alt_data``, partitioned by ``kind``
and ``dt``; refused messages on the dead letters.
"""

from __future__ import annotations

import pyarrow as pa

from trader.marketdata.decode import decode_alt
from trader.messages import AltDatum
from trader.runtime.consumer import Delivery
from trader.services.lake_sink import LakeSink, decimals
from trader.stores.lake import ALT_DATA, TIMESTAMP, VALUE, utc_dates


class SinkAlt(LakeSink):
    name = "sink-alt"
    table = ALT_DATA
    stream = "ALT_DATA"
    subject = "alt.norm.>"

    def decode(self, data: bytes) -> AltDatum:
        return decode_alt(data)

    def to_arrow(self, rows: list[tuple[Delivery, AltDatum]]) -> pa.Table:
        data = [a for _, a in rows]
        ts = pa.array([a.timestamp for a in data], pa.int64())
        columns = {
            "ts": ts.cast(TIMESTAMP),
            "ingest_ts": pa.array([d.arrival_ms for d, _ in rows], pa.int64()).cast(TIMESTAMP),
            "kind": pa.array([a.kind for a in data], pa.string()),
            "source": pa.array([a.source for a in data], pa.string()),
            "symbol": pa.array([a.symbol for a in data], pa.string()),
            "value": decimals([a.value for a in data], VALUE),
            "unit": pa.array([a.unit for a in data], pa.string()),
            "stream_seq": pa.array([d.seq for d, _ in rows], pa.int64()),
            "dt": utc_dates(ts),
            "venue_symbol": pa.array([a.venue_symbol for a in data], pa.string()),
            "predicted": decimals([a.predicted for a in data], VALUE),
            "next_ts": pa.array([a.next_time for a in data], pa.int64()).cast(TIMESTAMP),
            "price": decimals([a.price for a in data], VALUE),
            "side": pa.array([a.side for a in data], pa.string()),
        }
        return pa.Table.from_pydict(columns, schema=self.table.schema)


SERVICE = SinkAlt
