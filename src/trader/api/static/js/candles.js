// The candles of one instrument and timeframe: history from /api/bars, then closed bars and ticks from
// the WebSocket. Pure (no DOM, no network), so the page's tests can check it directly.
//
// A closed bar is final: it replaces its candle, and ticks of its time are not folded in again. A tick
// of a later time opens or extends the current candle (the normalizer closes it a moment later). A tick
// older than the newest candle and of a time with no candle is dropped: its bar will say what it did.
// Prices become numbers here for the chart only; tables show the exact strings.

const UNIT_MS = { s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** "1s", "5m", "4h", "1d" in milliseconds; an Error for anything else. */
export function timeframeMs(timeframe) {
  const match = /^(\d{1,4})([smhd])$/.exec(timeframe);
  if (!match || Number(match[1]) === 0) throw new Error(`timeframe ${timeframe} is not one like 1s, 1m, 1h`);
  return Number(match[1]) * UNIT_MS[match[2]];
}

function candleOf(startMs, row, closed) {
  return {
    time: Math.floor(startMs / 1000),
    open: Number(row.open),
    high: Number(row.high),
    low: Number(row.low),
    close: Number(row.close),
    volume: Number(row.volume ?? 0),
    closed,
  };
}

export class CandleBook {
  constructor(timeframe) {
    this.timeframe = timeframe;
    this.periodMs = timeframeMs(timeframe);
    this.byTime = new Map(); // chart time (epoch seconds) -> candle
    this.lastTime = null;
  }

  /** Rows of /api/bars (oldest first; `ts` the bar's start in ms): the candles, oldest first. */
  load(rows) {
    for (const row of rows) this.put(candleOf(row.ts, row, row.closed !== false));
    return this.candles();
  }

  candles() {
    return [...this.byTime.values()].sort((a, b) => a.time - b.time);
  }

  get last() {
    return this.lastTime === null ? null : this.byTime.get(this.lastTime);
  }

  /** A Bar from the WebSocket: `{candle, historical}` to hand the chart. */
  bar(bar) {
    return this.put(candleOf(bar.start, bar, bar.closed !== false));
  }

  /** A MarketTick folded into its candle: `{candle, historical}`, or null when it changes nothing. */
  tick(tick) {
    const time = Math.floor(tick.timestamp / this.periodMs) * (this.periodMs / 1000);
    const current = this.byTime.get(time);
    if (current?.closed) return null;
    if (current === undefined && this.lastTime !== null && time < this.lastTime) return null;
    const price = Number(tick.price);
    const size = Number(tick.size ?? 0);
    const candle = current
      ? {
          ...current,
          high: Math.max(current.high, price),
          low: Math.min(current.low, price),
          close: price,
          volume: current.volume + size,
        }
      : { time, open: price, high: price, low: price, close: price, volume: size, closed: false };
    return this.put(candle);
  }

  put(candle) {
    const historical = this.lastTime !== null && candle.time < this.lastTime;
    this.byTime.set(candle.time, candle);
    if (!historical) this.lastTime = candle.time;
    return { candle, historical };
  }

  /** Fills (ExecutionReports) as chart markers on their candles, oldest first. */
  markers(fills) {
    return fills
      .map((fill) => {
        const buy = fill.side === "buy";
        return {
          time: Math.floor(fill.timestamp / this.periodMs) * (this.periodMs / 1000),
          position: buy ? "belowBar" : "aboveBar",
          shape: buy ? "arrowUp" : "arrowDown",
          color: buy ? "#26a69a" : "#ef5350",
          text: `${buy ? "B" : "S"} ${fill.last_quantity} @ ${fill.last_price} ${fill.venue}`,
          id: fill.exec_id,
        };
      })
      .sort((a, b) => a.time - b.time);
  }
}
