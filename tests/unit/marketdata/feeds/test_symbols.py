"""One unified symbol per instrument, whatever the venue's spelling."""

from __future__ import annotations

import pytest

from trader.marketdata.feeds import VENUES, load_venue
from trader.marketdata.feeds.symbols import Instrument, SymbolError, parse_symbol, unified_symbol


@pytest.mark.parametrize(
    ("venue_symbol", "unified"),
    [
        ("BTCUSDT", "BTCUSDT"),  # Binance, Bybit
        ("BTC-USDT", "BTCUSDT"),  # OKX, Coinbase
        ("BTC-USD", "BTCUSD"),  # Coinbase
        ("XBT/USD", "BTCUSD"),  # Kraken v1: XBT is BTC
        ("BTC/USD", "BTCUSD"),  # Kraken v2
        ("XBTUSD", "BTCUSD"),  # Kraken REST altname
        ("XXBTZUSD", "BTCUSD"),  # Kraken REST result key
        ("XETHZEUR", "ETHEUR"),
        ("tBTCUSD", "BTCUSD"),  # Bitfinex
        ("XDG/USD", "DOGEUSD"),
        ("eth-btc", "ETHBTC"),
        ("ETHBTC", "ETHBTC"),
        ("SOL_USDC", "SOLUSDC"),
        ("BTCFDUSD", "BTCFDUSD"),  # the longest quote wins: not BTCFD + USD
        ("BTCTUSD", "BTCTUSD"),
        ("XRPUSDT", "XRPUSDT"),  # starts with X, but is not a Kraken legacy name
    ],
)
def test_every_spelling_maps_to_one_instrument(venue_symbol: str, unified: str) -> None:
    assert unified_symbol(venue_symbol) == unified


def test_usd_and_usdt_stay_different_instruments() -> None:
    assert unified_symbol("BTC-USD") != unified_symbol("BTC-USDT")


@pytest.mark.parametrize("bad", ["BTC-USDT-SWAP", "BTC", "???-USD", "BTC-BTC", "", "BTCXYZ"])
def test_what_is_not_a_spot_pair_is_refused(bad: str) -> None:
    with pytest.raises(SymbolError):
        parse_symbol(bad)


@pytest.mark.parametrize(
    ("venue", "spelled"),
    [
        ("binance", "BTCUSDT"),
        ("coinbase", "BTC-USDT"),
        ("kraken", "BTC/USDT"),
        ("bybit", "BTCUSDT"),
        ("okx", "BTC-USDT"),
    ],
)
def test_each_venue_writes_the_instrument_its_way_and_reads_it_back(venue: str, spelled: str) -> None:
    instrument = Instrument("BTC", "USDT")
    written = load_venue(venue)().venue_symbol(instrument)
    assert written == spelled
    assert parse_symbol(written) == instrument


def test_the_registry_names_each_venue_by_its_own_name() -> None:
    assert {name: load_venue(name).name for name in VENUES} == {name: name for name in VENUES}
    with pytest.raises(KeyError):
        load_venue("mtgox")
