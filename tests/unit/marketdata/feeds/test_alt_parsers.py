"""The alternative-data parsers on the frames of the venues' public API documentation."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest

from trader.marketdata.feeds.alt import AltParsed, Observation
from trader.marketdata.feeds.alt_binance import BinanceAlt, read_open_interest, read_premium_index
from trader.marketdata.feeds.alt_bybit import BybitAlt
from trader.marketdata.feeds.alt_okx import OkxAlt
from trader.marketdata.feeds.base import FrameError, Notice
from trader.marketdata.feeds.symbols import SymbolError, parse_perpetual


def observations(parsed: AltParsed) -> dict[str, Observation]:
    return {o.kind: o for o in parsed.items if isinstance(o, Observation)}


# Binance USD-M -------------------------------------------------------------------------------------

BINANCE_MARK = {
    "stream": "btcusdt@markPrice@1s",
    "data": {
        "e": "markPriceUpdate",
        "E": 1562305380000,
        "s": "BTCUSDT",
        "p": "11794.15000000",
        "i": "11784.62659091",
        "P": "11784.25641265",
        "r": "0.00038167",
        "T": 1562306400000,
    },
}
BINANCE_LIQUIDATION = {
    "stream": "btcusdt@forceOrder",
    "data": {
        "e": "forceOrder",
        "E": 1568014460893,
        "o": {
            "s": "BTCUSDT",
            "S": "SELL",
            "o": "LIMIT",
            "f": "IOC",
            "q": "0.014",
            "p": "9910",
            "ap": "9910.5",
            "X": "FILLED",
            "l": "0.014",
            "z": "0.014",
            "T": 1568014460893,
        },
    },
}


def test_binance_mark_price_frame_gives_funding_mark_and_index_exactly() -> None:
    found = observations(BinanceAlt().parse(json.dumps(BINANCE_MARK)))
    assert found["funding"].value == Decimal("0.00038167")
    assert found["funding"].next_time == 1562306400000
    assert found["funding"].predicted is None
    assert found["mark_price"].value == Decimal("11794.15000000")
    assert found["index_price"].value == Decimal("11784.62659091")
    assert {o.timestamp for o in found.values()} == {1562305380000}
    assert {o.venue_symbol for o in found.values()} == {"BTCUSDT"}


def test_binance_liquidation_takes_the_average_price_and_the_order_side() -> None:
    (liquidation,) = BinanceAlt().parse(json.dumps(BINANCE_LIQUIDATION)).items
    assert isinstance(liquidation, Observation)
    assert (liquidation.kind, liquidation.side) == ("liquidation", "sell")
    assert liquidation.value == Decimal("0.014")
    assert liquidation.price == Decimal("9910.5")
    assert liquidation.timestamp == 1568014460893


def test_binance_liquidation_not_yet_filled_takes_the_order_price() -> None:
    frame: dict[str, Any] = json.loads(json.dumps(BINANCE_LIQUIDATION))
    frame["data"]["o"]["ap"] = "0"
    (liquidation,) = BinanceAlt().parse(json.dumps(frame)).items
    assert isinstance(liquidation, Observation)
    assert liquidation.price == Decimal("9910")


def test_binance_rest_open_interest_and_premium_index() -> None:
    oi = read_open_interest({"openInterest": "10659.509", "symbol": "BTCUSDT", "time": 1589437530011}, "oi")
    assert (oi.kind, oi.value, oi.timestamp) == ("open_interest", Decimal("10659.509"), 1589437530011)
    payload = {
        "symbol": "BTCUSDT",
        "markPrice": "11793.63104562",
        "indexPrice": "11781.80495970",
        "estimatedSettlePrice": "11781.16138815",
        "lastFundingRate": "0.00038246",
        "interestRate": "0.00010000",
        "nextFundingTime": 1597392000000,
        "time": 1597370495002,
    }
    found = {o.kind: o for o in read_premium_index(payload, "premiumIndex")}
    assert found["funding"].value == Decimal("0.00038246")
    assert found["funding"].next_time == 1597392000000
    assert found["mark_price"].value == Decimal("11793.63104562")


def test_binance_streams_are_named_in_the_url() -> None:
    url = BinanceAlt().connect_url("wss://x/stream", ["BTCUSDT"], frozenset({"funding", "liquidation"}))
    assert url == "wss://x/stream?streams=btcusdt@markPrice@1s/btcusdt@forceOrder"


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        ('{"stream": "btcusdt@markPrice@1s", "data": {"e": "markPriceUpdate"', "malformed JSON"),
        ("[1, 2]", "expected a JSON object"),
        (json.dumps({**BINANCE_MARK, "data": {**BINANCE_MARK["data"], "r": "NaN"}}), "data.r"),
        (json.dumps({**BINANCE_MARK, "data": {**BINANCE_MARK["data"], "p": True}}), "data.p"),
        (
            json.dumps({**BINANCE_MARK, "data": {k: v for k, v in BINANCE_MARK["data"].items() if k != "T"}}),
            "data.T",
        ),
    ],
)
def test_binance_malformed_frames_are_refused_with_the_reason(frame: str, reason: str) -> None:
    with pytest.raises(FrameError) as caught:
        BinanceAlt().parse(frame)
    assert reason in caught.value.reason


def test_a_float_never_reaches_a_value() -> None:
    frame = {**BINANCE_MARK, "data": {**BINANCE_MARK["data"], "r": 0.1}}  # a JSON number, not a string
    found = observations(BinanceAlt().parse(json.dumps(frame)))
    assert found["funding"].value == Decimal("0.1")  # the decimal 0.1, not the binary float's expansion


# Bybit v5 linear -----------------------------------------------------------------------------------

BYBIT_SNAPSHOT = {
    "topic": "tickers.BTCUSDT",
    "type": "snapshot",
    "data": {
        "symbol": "BTCUSDT",
        "tickDirection": "PlusTick",
        "lastPrice": "17216.00",
        "markPrice": "17217.33",
        "indexPrice": "17227.36",
        "openInterest": "68744.761",
        "openInterestValue": "1183601235.91",
        "nextFundingTime": "1673280000000",
        "fundingRate": "-0.000212",
        "bid1Price": "17215.50",
    },
    "cs": 24987956059,
    "ts": 1673272861686,
}
BYBIT_DELTA = {
    "topic": "tickers.BTCUSDT",
    "type": "delta",
    "data": {"symbol": "BTCUSDT", "markPrice": "17218.01", "fundingRate": "-0.000213"},
    "cs": 24987956060,
    "ts": 1673272861786,
}
BYBIT_LIQUIDATION = {
    "topic": "allLiquidation.BTCUSDT",
    "type": "snapshot",
    "ts": 1739502303204,
    "data": [
        {"T": 1739502302929, "s": "BTCUSDT", "S": "Buy", "v": "0.003", "p": "94500.1"},
        {"T": 1739502302930, "s": "BTCUSDT", "S": "Sell", "v": "0.5", "p": "94510"},
    ],
}


def test_bybit_ticker_snapshot_then_delta_keeps_the_next_funding_time() -> None:
    venue = BybitAlt()
    snap = observations(venue.parse(json.dumps(BYBIT_SNAPSHOT)))
    assert snap["funding"].value == Decimal("-0.000212")
    assert snap["funding"].next_time == 1673280000000
    assert snap["open_interest"].value == Decimal("68744.761")
    assert snap["index_price"].value == Decimal("17227.36")
    delta = observations(venue.parse(json.dumps(BYBIT_DELTA)))
    assert set(delta) == {"funding", "mark_price"}  # only what the delta holds
    assert delta["funding"].next_time == 1673280000000
    assert delta["mark_price"].timestamp == 1673272861786


def test_bybit_liquidation_side_is_the_closing_order_side() -> None:
    items = BybitAlt().parse(json.dumps(BYBIT_LIQUIDATION)).items
    assert [(o.side, o.value, o.price) for o in items if isinstance(o, Observation)] == [
        ("sell", Decimal("0.003"), Decimal("94500.1")),  # a long (Buy) closed by selling
        ("buy", Decimal("0.5"), Decimal("94510")),
    ]


def test_bybit_bad_liquidation_entry_is_an_error_and_the_good_one_stays() -> None:
    frame = json.loads(json.dumps(BYBIT_LIQUIDATION))
    frame["data"][0]["v"] = "lots"
    parsed = BybitAlt().parse(json.dumps(frame))
    assert len([o for o in parsed.items if isinstance(o, Observation)]) == 1
    assert parsed.errors == ["data[0].v: 'lots' is not a number"]
    assert parsed.venue_symbol == "BTCUSDT"


def test_bybit_subscribes_tickers_and_liquidations_and_pings() -> None:
    venue = BybitAlt()
    (frame,) = venue.subscribe_frames(["BTCUSDT"], frozenset({"funding", "liquidation"}))
    assert json.loads(frame)["args"] == ["tickers.BTCUSDT", "allLiquidation.BTCUSDT"]
    assert json.loads(venue.ping_frame() or "")["op"] == "ping"
    assert isinstance(venue.parse('{"op": "pong", "args": ["1"], "conn_id": "x"}').items[0], Notice)


# OKX v5 swaps --------------------------------------------------------------------------------------

OKX_FUNDING = {
    "arg": {"channel": "funding-rate", "instId": "BTC-USDT-SWAP"},
    "data": [
        {
            "formulaType": "noRate",
            "fundingRate": "0.0001875391284828",
            "fundingTime": "1700726400000",
            "impactValue": "",
            "instId": "BTC-USDT-SWAP",
            "instType": "SWAP",
            "method": "current_period",
            "nextFundingRate": "",
            "nextFundingTime": "1700755200000",
            "premium": "0.0001233824646391",
            "settFundingRate": "0.0001699799259033",
            "settState": "settled",
            "ts": "1700724675402",
        }
    ],
}
OKX_LIQUIDATIONS = {
    "arg": {"channel": "liquidation-orders", "instType": "SWAP"},
    "data": [
        {
            "details": [
                {"bkLoss": "0", "bkPx": "42000.1", "ccy": "", "posSide": "long", "side": "sell", "sz": "13",
                 "ts": "1692266434010"}
            ],
            "instFamily": "BTC-USDT",
            "instId": "BTC-USDT-SWAP",
            "instType": "SWAP",
            "uly": "BTC-USDT",
        },
        {
            "details": [{"bkPx": "0.007831", "side": "buy", "sz": "13", "ts": "1692266434011"}],
            "instFamily": "IOST-USDT",
            "instId": "IOST-USDT-SWAP",
            "instType": "SWAP",
        },
    ],
}  # fmt: skip


def test_okx_funding_rate_charged_at_funding_time() -> None:
    (funding,) = OkxAlt().parse(json.dumps(OKX_FUNDING)).items
    assert isinstance(funding, Observation)
    assert funding.value == Decimal("0.0001875391284828")
    assert funding.next_time == 1700726400000
    assert funding.predicted is None  # "" is not a rate
    with_predicted = json.loads(json.dumps(OKX_FUNDING))
    with_predicted["data"][0]["nextFundingRate"] = "0.0002"
    (funding,) = OkxAlt().parse(json.dumps(with_predicted)).items
    assert isinstance(funding, Observation)
    assert funding.predicted == Decimal("0.0002")


def test_okx_liquidations_in_base_units_for_the_configured_swaps_only() -> None:
    venue = OkxAlt({"BTC-USDT-SWAP": Decimal("0.01")})
    venue.subscribe_frames(["BTC-USDT-SWAP"], frozenset({"liquidation"}))
    (liquidation,) = venue.parse(json.dumps(OKX_LIQUIDATIONS)).items
    assert isinstance(liquidation, Observation)
    assert (liquidation.venue_symbol, liquidation.value, liquidation.unit) == (
        "BTC-USDT-SWAP",
        Decimal("0.13"),
        None,
    )
    assert (liquidation.side, liquidation.price) == ("sell", Decimal("42000.1"))


def test_okx_liquidations_without_contract_size_say_contracts() -> None:
    venue = OkxAlt()
    venue.subscribe_frames(["BTC-USDT-SWAP"], frozenset({"liquidation"}))
    (liquidation,) = venue.parse(json.dumps(OKX_LIQUIDATIONS)).items
    assert isinstance(liquidation, Observation)
    assert (liquidation.value, liquidation.unit) == (Decimal("13"), "contracts")


def test_okx_mark_index_and_open_interest() -> None:
    venue = OkxAlt()
    mark = {
        "arg": {"channel": "mark-price", "instId": "BTC-USDT-SWAP"},
        "data": [{"instType": "SWAP", "instId": "BTC-USDT-SWAP", "markPx": "42310.6", "ts": "1630049139746"}],
    }
    index = {
        "arg": {"channel": "index-tickers", "instId": "BTC-USDT"},
        "data": [{"instId": "BTC-USDT", "idxPx": "42311.2", "high24h": "1", "ts": "1630049139747"}],
    }
    oi = {"arg": {"channel": "open-interest", "instId": "BTC-USDT-SWAP"},
          "data": [{"instId": "BTC-USDT-SWAP", "instType": "SWAP", "oi": "5000", "oiCcy": "50",
                    "oiUsd": "2100000", "ts": "1597026383085"}]}  # fmt: skip
    found = {**observations(venue.parse(json.dumps(mark))), **observations(venue.parse(json.dumps(index)))}
    found.update(observations(venue.parse(json.dumps(oi))))
    assert found["mark_price"].value == Decimal("42310.6")
    assert (found["index_price"].venue_symbol, found["index_price"].value) == (
        "BTC-USDT-SWAP",
        Decimal("42311.2"),
    )
    assert found["open_interest"].value == Decimal("50")  # oiCcy: base units, not contracts
    assert venue.parse("pong").items == [Notice("pong")]


def test_okx_subscribes_the_index_by_its_own_name() -> None:
    (frame,) = OkxAlt().subscribe_frames(["BTC-USDT-SWAP"], frozenset({"index_price", "liquidation"}))
    assert json.loads(frame)["args"] == [
        {"channel": "index-tickers", "instId": "BTC-USDT"},
        {"channel": "liquidation-orders", "instType": "SWAP"},
    ]


def test_okx_error_event_is_a_notice_not_data() -> None:
    parsed = OkxAlt().parse('{"event": "error", "code": "60012", "msg": "Invalid request"}')
    assert parsed.items == [Notice("error", "60012: Invalid request")]


# Identity and symbols -------------------------------------------------------------------------------


def test_identity_tells_liquidations_at_one_millisecond_apart() -> None:
    items = BybitAlt().parse(json.dumps({**BYBIT_LIQUIDATION, "data": [
        {"T": 1, "s": "BTCUSDT", "S": "Buy", "v": "1", "p": "2"},
        {"T": 1, "s": "BTCUSDT", "S": "Buy", "v": "1", "p": "3"},
    ]})).items  # fmt: skip
    assert len({o.identity for o in items if isinstance(o, Observation)}) == 2


@pytest.mark.parametrize(
    "text", ["BTCUSDT", "BTC-USDT-SWAP", "BTCUSDT-PERP", "BTC/USDT:USDT", "btc-usdt-perp"]
)
def test_perpetual_spellings_unify_apart_from_spot(text: str) -> None:
    assert parse_perpetual(text).unified == "BTCUSDT-PERP"


def test_an_inverse_contract_is_refused() -> None:
    with pytest.raises(SymbolError, match="inverse"):
        parse_perpetual("BTC/USD:BTC")
