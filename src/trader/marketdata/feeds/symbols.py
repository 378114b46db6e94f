"""One symbol for one instrument across venues.

The rest of the system names a spot pair by base and quote, upper case, no separator: ``BTCUSDT``
(also a subject token, ``market.tick.binance.BTCUSDT``). Venues spell the same pair ``BTCUSDT`` (Binance,
Bybit), ``BTC-USDT`` (Coinbase, OKX), ``BTC/USDT`` or ``XBT/USDT`` (Kraken), ``XXBTZUSD`` (Kraken's
older REST names) or ``tBTCUSD`` (Bitfinex). ``parse_symbol`` reads any of these into an ``Instrument``;
each venue module writes it back in its own form.

USD and USDT (or USDC) are different quote currencies with different prices: ``BTC-USD`` is ``BTCUSD``,
never ``BTCUSDT``.

A linear perpetual swap is told apart from its spot pair by a suffix: ``BTCUSDT-PERP`` (``parse_perpetual``
reads OKX's ``BTC-USDT-SWAP``, ccxt's ``BTC/USDT:USDT`` and the venues' bare ``BTCUSDT``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Venue-specific codes for the same asset. Kraken calls bitcoin XBT and dogecoin XDG.
ASSET_ALIASES = {"XBT": "BTC", "XDG": "DOGE"}

# Quote currencies, to split a pair written without a separator ("ETHBTC", "BTCFDUSD"). Longest first,
# so that "USDT" is tried before "USD".
KNOWN_QUOTES = tuple(
    sorted(
        (
            "USDT", "USDC", "FDUSD", "TUSD", "BUSD", "USDE", "PYUSD", "DAI", "USD", "EUR", "GBP", "JPY",
            "TRY", "BRL", "AUD", "CAD", "CHF", "BTC", "ETH", "BNB", "SOL",
        ),
        key=len,
        reverse=True,
    )
)  # fmt: skip
# Well-known base assets: where two splits are possible ("XBTUSD": XB + TUSD, or XBT + USD), the one with
# a known base wins.
KNOWN_BASES = frozenset(
    {"BTC", "ETH", "SOL", "XRP", "DOGE", "ADA", "BNB", "LTC", "DOT", "AVAX", "LINK", "TRX", "TON", "SHIB"}
    | set(ASSET_ALIASES)
)
SEPARATORS = re.compile(r"[-/_:]")
ASSET = re.compile(r"^[A-Z0-9]{1,15}$")


class SymbolError(ValueError):
    """A venue symbol that is not a spot pair this module can read."""


PERP_SUFFIX = "-PERP"


@dataclass(frozen=True, slots=True)
class Instrument:
    """A spot pair, or (``perp``) the linear perpetual swap on it, settled in the quote currency."""

    base: str
    quote: str
    perp: bool = False

    @property
    def unified(self) -> str:
        """``BTCUSDT`` for the spot pair, ``BTCUSDT-PERP`` for the perpetual: never mistaken for each
        other, and still one subject token."""
        return f"{self.base}{self.quote}{PERP_SUFFIX if self.perp else ''}"


def unify_asset(code: str) -> str:
    code = code.upper()
    return ASSET_ALIASES.get(code, code)


def parse_symbol(text: str) -> Instrument:
    """The instrument a venue symbol names, in any of the venues' spellings."""
    raw = text.strip()
    if len(raw) > 1 and raw[0] == "t" and raw[1:].isupper():
        raw = raw[1:]  # Bitfinex prefixes trading pairs with "t"
    parts = SEPARATORS.split(raw)
    if len(parts) == 2:
        base, quote = parts
    elif len(parts) > 2:
        raise SymbolError(f"{text!r} is not a spot pair (a derivative?)")
    else:
        base, quote = _split_joined(raw.upper(), text)
    instrument = Instrument(unify_asset(base), unify_asset(quote))
    for asset in (instrument.base, instrument.quote):
        if not ASSET.match(asset):
            raise SymbolError(f"{text!r}: {asset!r} is not an asset code")
    if instrument.base == instrument.quote:
        raise SymbolError(f"{text!r}: base and quote are the same")
    return instrument


def parse_perpetual(text: str) -> Instrument:
    """The linear perpetual a symbol names: ``BTCUSDT-PERP``, ``BTC-USDT-PERP``, OKX's ``BTC-USDT-SWAP``,
    ccxt's ``BTC/USDT:USDT``, or the pair alone (``BTCUSDT``: Binance USD-M and Bybit linear spell their
    perpetuals as the spot pair)."""
    raw = text.strip()
    upper = raw.upper()
    for suffix in (PERP_SUFFIX, "-SWAP", "_PERP"):
        if upper.endswith(suffix):
            raw = raw[: -len(suffix)]
            break
    else:
        if ":" in raw:
            raw, settle = raw.split(":", 1)
            if unify_asset(settle) != parse_symbol(raw).quote:
                raise SymbolError(f"{text!r}: settled in {settle}, not in the quote (an inverse contract?)")
    instrument = parse_symbol(raw)
    return Instrument(instrument.base, instrument.quote, perp=True)


def unified_symbol(text: str) -> str:
    """``BTC-USD``, ``XBT/USD``, ``tBTCUSD``, ``XXBTZUSD`` -> ``BTCUSD``; ``BTC-USDT`` -> ``BTCUSDT``."""
    return parse_symbol(text).unified


def _split_joined(raw: str, text: str) -> tuple[str, str]:
    # Kraken's legacy names: X or Z, three letters, X or Z, three letters (XXBTZUSD, XETHZEUR).
    if len(raw) == 8 and raw[0] in "XZ" and raw[4] in "XZ":
        return raw[1:4], raw[5:]
    splits = [(raw[: -len(q)], q) for q in KNOWN_QUOTES if raw.endswith(q) and len(raw) > len(q)]
    for base, quote in splits:
        if base in KNOWN_BASES:
            return base, quote
    if splits:
        return splits[0]  # the longest quote: BTCFDUSD is BTC + FDUSD
    raise SymbolError(f"{text!r}: no known quote currency to split it at; write it BASE-QUOTE")
