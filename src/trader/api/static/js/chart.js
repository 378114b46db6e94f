// The two charts, on TradingView's lightweight-charts (vendored: ../vendor/lightweight-charts/README.md):
// candles with volume and fills as markers, and the total PnL over time. The library's attribution
// logo stays on (its license's NOTICE asks for the attribution; the page's footer has it too).

import {
  CandlestickSeries,
  ColorType,
  createChart,
  createSeriesMarkers,
  HistogramSeries,
  LineSeries,
} from "../vendor/lightweight-charts/lightweight-charts.standalone.production.mjs";

const UP = "#26a69a";
const DOWN = "#ef5350";

function baseOptions() {
  return {
    autoSize: true,
    layout: {
      background: { type: ColorType.Solid, color: "#171b24" },
      textColor: "#c3c8d4",
      attributionLogo: true,
    },
    grid: { vertLines: { color: "#222838" }, horzLines: { color: "#222838" } },
    timeScale: { timeVisible: true, secondsVisible: true, borderColor: "#2a3040" },
    rightPriceScale: { borderColor: "#2a3040" },
  };
}

/** Enough decimals to show a price's last digit (0.0001 steps for a price of 0.5, 0.01 for 60,000). */
function precisionFor(price) {
  if (!(price > 0)) return 2;
  return Math.min(8, Math.max(2, 4 - Math.floor(Math.log10(price))));
}

export class PriceChart {
  constructor(element) {
    this.chart = createChart(element, baseOptions());
    this.candles = this.chart.addSeries(CandlestickSeries, {
      upColor: UP,
      downColor: DOWN,
      borderVisible: false,
      wickUpColor: UP,
      wickDownColor: DOWN,
    });
    this.candles.priceScale().applyOptions({ scaleMargins: { top: 0.05, bottom: 0.25 } });
    this.volume = this.chart.addSeries(HistogramSeries, {
      priceFormat: { type: "volume" },
      priceScaleId: "volume",
      lastValueVisible: false,
      priceLineVisible: false,
    });
    this.chart.priceScale("volume").applyOptions({ scaleMargins: { top: 0.8, bottom: 0 } });
    this.markers = createSeriesMarkers(this.candles, []);
  }

  static volumeOf(candle) {
    return { time: candle.time, value: candle.volume, color: candle.close >= candle.open ? `${UP}80` : `${DOWN}80` };
  }

  static priceOf(candle) {
    const { time, open, high, low, close } = candle;
    return { time, open, high, low, close };
  }

  /** Every candle at once (oldest first), and the markers. */
  show(candles, markers) {
    const precision = precisionFor(candles.at(-1)?.close);
    this.candles.applyOptions({ priceFormat: { type: "price", precision, minMove: 10 ** -precision } });
    this.candles.setData(candles.map(PriceChart.priceOf));
    this.volume.setData(candles.map(PriceChart.volumeOf));
    this.markers.setMarkers(markers);
    this.chart.timeScale().scrollToRealTime();
  }

  /** One candle changed (`historical`: not the newest). */
  update({ candle, historical }) {
    this.candles.update(PriceChart.priceOf(candle), historical);
    this.volume.update(PriceChart.volumeOf(candle), historical);
  }

  setMarkers(markers) {
    this.markers.setMarkers(markers);
  }
}

export class PnlChart {
  constructor(element) {
    this.chart = createChart(element, baseOptions());
    this.line = this.chart.addSeries(LineSeries, { color: "#4f8cff", lineWidth: 2 });
    this.lastTime = null;
  }

  /** Rows of /api/pnl/history (oldest first): one point a second, the last of that second. */
  show(rows) {
    const bySecond = new Map();
    for (const row of rows) bySecond.set(Math.floor(row.ts / 1000), Number(row.total));
    const points = [...bySecond].map(([time, value]) => ({ time, value })).sort((a, b) => a.time - b.time);
    this.line.setData(points);
    this.lastTime = points.at(-1)?.time ?? null;
    this.chart.timeScale().fitContent();
  }

  /** A total PnL snapshot from the WebSocket. */
  add(snapshot) {
    const time = Math.floor(snapshot.timestamp / 1000);
    if (this.lastTime !== null && time < this.lastTime) return;
    this.line.update({ time, value: Number(snapshot.total) });
    this.lastTime = time;
  }
}
