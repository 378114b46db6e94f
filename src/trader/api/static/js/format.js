// How the dashboard shows values. Prices, quantities, fees and PnL come from the api as decimal strings;
// they are shown as they are, or rounded on the string itself (never through a binary float).

const DECIMAL = /^([+-]?)(\d*)(?:\.(\d*))?(?:[eE]([+-]?\d+))?$/;

/** A decimal string rounded to `places` (half away from zero), exactly; anything else as it is. */
export function roundDecimal(text, places) {
  if (text === null || text === undefined || text === "") return "";
  const match = DECIMAL.exec(String(text));
  if (!match || (match[2] === "" && !match[3])) return String(text);
  const [, sign, whole, fraction = "", exponent = "0"] = match;
  const digits = BigInt(whole + fraction || "0");
  const shift = Number(exponent) - fraction.length + places; // value * 10^places = digits * 10^shift
  let scaled;
  if (shift >= 0) {
    scaled = digits * 10n ** BigInt(shift);
  } else {
    const divisor = 10n ** BigInt(-shift);
    scaled = digits / divisor + ((digits % divisor) * 2n >= divisor ? 1n : 0n);
  }
  let out = scaled.toString();
  if (places > 0) {
    out = out.padStart(places + 1, "0");
    out = `${out.slice(0, -places)}.${out.slice(-places)}`;
  }
  return sign === "-" && scaled !== 0n ? `-${out}` : out;
}

/** -1, 0 or 1: the sign of a decimal string (for colouring PnL). */
export function signOf(text) {
  const match = DECIMAL.exec(String(text ?? ""));
  if (!match || /^0*$/.test((match[2] || "") + (match[3] || ""))) return 0;
  return match[1] === "-" ? -1 : 1;
}

/** Epoch milliseconds as `YYYY-MM-DD HH:MM:SS` UTC (the time only when it is today). */
export function timeText(ms) {
  if (!ms) return "";
  const iso = new Date(ms).toISOString();
  const today = new Date().toISOString().slice(0, 10);
  return iso.slice(0, 10) === today ? iso.slice(11, 19) : `${iso.slice(0, 10)} ${iso.slice(11, 19)}`;
}

/** A rate per second, or a dash. */
export function rateText(value) {
  return value === null || value === undefined ? "–" : Number(value).toFixed(1);
}
