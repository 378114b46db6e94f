"""Per venue and symbol: which trades were seen, which are missing, which arrive twice.

Where a venue numbers a symbol's trades one by one (Binance, Coinbase, Kraken, OKX), a trade id past
the last one plus one opens a gap; a trade at or below the last one is new only when it fills a gap (it
came out of order, or from REST), else it is a duplicate (a replay after a reconnect). Where ids are
not per symbol (Bybit's are shared across symbols), duplicates are told by a window of recent ids and
gaps cannot be seen from ids.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass, field

from trader.marketdata.feeds.base import Trade


@dataclass
class Gap:
    """Trade ids ``first``..``last`` (inclusive) that did not arrive. ``missing`` holds those still
    wanted, at most the fill limit of them (the oldest)."""

    first: int
    last: int
    missing: set[int]
    detected_at: float
    after_ts: int | None = None  # time of the last trade before the gap: where REST by time starts
    announced: bool = False

    @property
    def size(self) -> int:
        return self.last - self.first + 1


@dataclass
class TradeTracker:
    contiguous: bool
    max_missing: int = 10_000
    recent_size: int = 20_000
    last: int | None = None  # highest trade id seen (contiguous venues)
    last_ts: int | None = None  # latest trade time seen, ms
    gaps: list[Gap] = field(default_factory=list)
    duplicates: int = 0
    _recent: OrderedDict[str, None] = field(default_factory=OrderedDict)

    def accept(self, trade: Trade, now: float | None = None) -> tuple[bool, Gap | None]:
        """Whether ``trade`` is new (to publish), and the gap it reveals, if any."""
        before_ts = self.last_ts
        if self.last_ts is None or trade.timestamp > self.last_ts:
            self.last_ts = trade.timestamp
        if not self.contiguous or trade.seq is None:
            return self._accept_by_window(trade.trade_id), None
        first_id = trade.seq - trade.span + 1
        if self.last is None:
            self.last = trade.seq
            return True, None
        if trade.seq <= self.last:
            new = self._fill(range(first_id, trade.seq + 1))
            self.duplicates += not new
            return new, None
        gap = self._open_gap(self.last + 1, first_id - 1, now, before_ts)
        self.last = trade.seq
        return True, gap

    def observe_last_id(self, seq: int, now: float | None = None) -> Gap | None:
        """The venue says its latest trade id is ``seq`` (a heartbeat): trades up to it should be here."""
        if not self.contiguous or self.last is None or seq <= self.last:
            return None
        gap = self._open_gap(self.last + 1, seq, now, self.last_ts)
        self.last = seq
        return gap

    def is_missing(self, seq: int) -> bool:
        return any(seq in gap.missing for gap in self.gaps)

    def due_gaps(self, grace_s: float, now: float | None = None) -> tuple[list[Gap], list[Gap]]:
        """Gaps past their grace period and not announced yet: (still missing trades, filled meanwhile
        by trades that came out of order). The second kind is forgotten."""
        now = time.monotonic() if now is None else now
        due = [g for g in self.gaps if not g.announced and now - g.detected_at >= grace_s]
        healed = [g for g in due if not g.missing]
        self.gaps = [g for g in self.gaps if g not in healed]
        for gap in due:
            gap.announced = True
        return [g for g in due if g.missing], healed

    def close_gap(self, gap: Gap) -> None:
        if gap in self.gaps:
            self.gaps.remove(gap)

    def state(self) -> dict[str, int | None]:
        return {"last": self.last, "last_ts": self.last_ts}

    def restore(self, state: dict[str, int | None]) -> None:
        self.last = state.get("last")
        self.last_ts = state.get("last_ts")

    def _open_gap(self, first: int, last: int, now: float | None, after_ts: int | None) -> Gap | None:
        if last < first:
            return None
        wanted = range(first, min(last, first + self.max_missing - 1) + 1)
        gap = Gap(first, last, set(wanted), time.monotonic() if now is None else now, after_ts)
        self.gaps.append(gap)
        return gap

    def _fill(self, ids: range) -> bool:
        filled = False
        for gap in self.gaps:
            for seq in ids:
                if seq in gap.missing:
                    gap.missing.discard(seq)
                    filled = True
        return filled

    def _accept_by_window(self, trade_id: str) -> bool:
        if trade_id in self._recent:
            self.duplicates += 1
            return False
        self._recent[trade_id] = None
        if len(self._recent) > self.recent_size:
            self._recent.popitem(last=False)
        return True
