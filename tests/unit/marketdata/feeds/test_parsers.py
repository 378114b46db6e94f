"""Each venue's parser on frames shaped as in the venue's public API documentation, and on bad ones."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest

from trader.marketdata.feeds.base import FrameError, LastTradeId, Notice, Quote, Trade, TradeRange, iso_ms
from trader.marketdata.feeds.binance import Binance
from trader.marketdata.feeds.binance import parse_rest_trades as binance_rest
from trader.marketdata.feeds.bybit import Bybit
from trader.marketdata.feeds.bybit import parse_rest_trades as bybit_rest
from trader.marketdata.feeds.coinbase import Coinbase
from trader.marketdata.feeds.coinbase import parse_rest_trades as coinbase_rest
from trader.marketdata.feeds.kraken import Kraken, rest_pair
from trader.marketdata.feeds.kraken import parse_rest_trades as kraken_rest
from trader.marketdata.feeds.okx import Okx
from trader.marketdata.feeds.okx import parse_rest_trades as okx_rest

# Binance -----------------------------------------------------------------------------------------


def test_binance_trade_and_book_ticker() -> None:
    frame = {
        "stream": "bnbbtc@trade",
        "data": {
            "e": "trade",
            "E": 1672515782136,
            "s": "BNBBTC",
            "t": 12345,
            "p": "0.001",
            "q": "100",
            "T": 1672515782136,
            "m": True,
            "M": True,
        },
    }
    parsed = Binance().parse(json.dumps(frame))
    assert parsed.items == [
        Trade("BNBBTC", "12345", Decimal("0.001"), Decimal("100"), "sell", 1672515782136, seq=12345)
    ]
    book = {
        "stream": "bnbusdt@bookTicker",
        "data": {
            "u": 400900217,
            "s": "BNBUSDT",
            "b": "25.35190000",
            "B": "31.21000000",
            "a": "25.36520000",
            "A": "40.66000000",
        },
    }
    assert Binance().parse(json.dumps(book)).items == [
        Quote("BNBUSDT", Decimal("25.3519"), Decimal("25.3652"))
    ]


def test_binance_buyer_taker_is_a_buy_and_the_url_names_the_streams() -> None:
    frame = {
        "stream": "btcusdt@trade",
        "data": {"e": "trade", "s": "BTCUSDT", "t": 1, "p": "1", "q": "2", "T": 1672515782136, "m": False},
    }
    assert Binance().parse(json.dumps(frame)).items[0].side == "buy"  # type: ignore[union-attr]
    url = Binance().connect_url("wss://stream.binance.com:9443/stream", ["BTCUSDT"])
    assert url == "wss://stream.binance.com:9443/stream?streams=btcusdt@trade/btcusdt@bookTicker"
    assert Binance().parse('{"result": null, "id": 1}').items == [Notice("subscribed", "id 1")]


def test_binance_rest_history() -> None:
    rows = [
        {
            "id": 28457,
            "price": "4.00000100",
            "qty": "12.00000000",
            "quoteQty": "48.000012",
            "time": 1499865549590,
            "isBuyerMaker": True,
            "isBestMatch": True,
        }
    ]
    assert binance_rest("BNBBTC", rows) == [
        Trade("BNBBTC", "28457", Decimal("4.000001"), Decimal("12"), "sell", 1499865549590, seq=28457)
    ]


# Coinbase ----------------------------------------------------------------------------------------


def test_coinbase_match_side_is_the_makers_so_the_tick_takes_the_other() -> None:
    match = {
        "type": "match",
        "trade_id": 10,
        "sequence": 50,
        "maker_order_id": "ac928c66",
        "taker_order_id": "132fb6ae",
        "time": "2014-11-07T08:19:27.028459Z",
        "product_id": "BTC-USD",
        "size": "5.23512",
        "side": "sell",
        "price": "400.23",
    }
    trade = Coinbase().parse(json.dumps(match)).items[0]
    assert trade == Trade(
        "BTC-USD", "10", Decimal("400.23"), Decimal("5.23512"), "buy", 1415348367028, seq=10
    )


def test_coinbase_ticker_heartbeat_and_subscriptions() -> None:
    ticker = {
        "type": "ticker",
        "sequence": 37475248783,
        "product_id": "ETH-USD",
        "price": "1285.22",
        "best_bid": "1285.04",
        "best_bid_size": "0.46",
        "best_ask": "1285.27",
        "best_ask_size": "1.56",
        "side": "buy",
        "time": "2022-10-19T23:28:22.061769Z",
        "trade_id": 370843401,
        "last_size": "11.4",
    }
    assert Coinbase().parse(json.dumps(ticker)).items == [
        Quote("ETH-USD", Decimal("1285.04"), Decimal("1285.27"))
    ]
    beat = {
        "type": "heartbeat",
        "sequence": 90,
        "last_trade_id": 20,
        "product_id": "BTC-USD",
        "time": "2014-11-07T08:19:28.464459Z",
    }
    assert Coinbase().parse(json.dumps(beat)).items == [LastTradeId("BTC-USD", 20)]
    assert Coinbase().parse(json.dumps({**beat, "last_trade_id": 0})).items == []  # nothing traded yet
    subscribed = Coinbase().parse('{"type": "subscriptions", "channels": []}').items[0]
    assert isinstance(subscribed, Notice)
    assert subscribed.kind == "subscribed"
    subscribe = json.loads(Coinbase().subscribe_frames(["BTC-USD"])[0])
    assert subscribe == {
        "type": "subscribe",
        "product_ids": ["BTC-USD"],
        "channels": ["matches", "ticker", "heartbeat"],
    }


def test_coinbase_rest_trades() -> None:
    rows = [
        {
            "time": "2014-11-07T22:19:28.578544Z",
            "trade_id": 74,
            "price": "10.00000000",
            "size": "0.01000000",
            "side": "buy",
        }
    ]
    assert coinbase_rest("BTC-USD", rows) == [
        Trade("BTC-USD", "74", Decimal("10"), Decimal("0.01"), "sell", 1415398768578, seq=74)
    ]
    with pytest.raises(FrameError, match="NotFound"):
        coinbase_rest("BTC-USD", {"message": "NotFound"})


# Kraken ------------------------------------------------------------------------------------------


def test_kraken_trades_are_json_numbers_read_exactly() -> None:
    frame = (
        '{"channel": "trade", "type": "update", "data": [{"symbol": "MATIC/USD", "side": "sell", '
        '"price": 0.5117, "qty": 40.0, "ord_type": "market", "trade_id": 4665906, '
        '"timestamp": "2023-09-25T07:49:37.708706Z"}, {"symbol": "MATIC/USD", "side": "buy", '
        '"price": 0.1, "qty": 1e-8, "ord_type": "limit", "trade_id": 4665907, '
        '"timestamp": "2023-09-25T07:49:37.709Z"}]}'
    )
    parsed = Kraken().parse(frame)
    assert parsed.items == [
        Trade("MATIC/USD", "4665906", Decimal("0.5117"), Decimal("40.0"), "sell", 1695628177708, seq=4665906),
        Trade("MATIC/USD", "4665907", Decimal("0.1"), Decimal("1e-8"), "buy", 1695628177709, seq=4665907),
    ]
    assert parsed.errors == []


def test_kraken_ticker_heartbeat_pong_and_acks() -> None:
    ticker = (
        '{"channel": "ticker", "type": "update", "data": [{"symbol": "BTC/USD", "bid": 26615.4, '
        '"bid_qty": 0.6, "ask": 26615.5, "ask_qty": 4.3, "last": 26615.5, "volume": 1200.5}]}'
    )
    assert Kraken().parse(ticker).items == [Quote("BTC/USD", Decimal("26615.4"), Decimal("26615.5"))]
    assert Kraken().parse('{"channel": "heartbeat"}').items == [Notice("heartbeat")]
    assert Kraken().parse('{"method": "pong", "req_id": 3}').items == [Notice("pong")]
    refused = Kraken().parse(
        '{"method": "subscribe", "success": false, "error": "Currency pair not supported"}'
    )
    assert refused.items[0] == Notice("error", "subscribe: Currency pair not supported")
    frames = [json.loads(f) for f in Kraken().subscribe_frames(["BTC/USD"])]
    assert [f["params"]["channel"] for f in frames] == ["trade", "ticker"]
    assert json.loads(Kraken().ping_frame() or "")["method"] == "ping"


def test_kraken_rest_trades_and_pair_names() -> None:
    payload = {
        "error": [],
        "result": {
            "XXBTZUSD": [
                ["30243.40000", "0.34507674", Decimal("1688669597.8277369"), "b", "m", "", 61044952]
            ],
            "last": "1688671969993150842",
        },
    }
    trades, last = kraken_rest("BTC/USD", payload)
    assert trades == [
        Trade(
            "BTC/USD",
            "61044952",
            Decimal("30243.4"),
            Decimal("0.34507674"),
            "buy",
            1688669597827,
            seq=61044952,
        )
    ]
    assert last == "1688671969993150842"
    assert rest_pair("BTC/USD") == "XBTUSD"
    assert rest_pair("DOGE/USDT") == "XDGUSDT"
    with pytest.raises(FrameError, match="Unknown asset pair"):
        kraken_rest("BTC/USD", {"error": ["EQuery:Unknown asset pair"]})


# Bybit -------------------------------------------------------------------------------------------


def test_bybit_public_trade_and_level_one_book() -> None:
    frame = {
        "topic": "publicTrade.BTCUSDT",
        "type": "snapshot",
        "ts": 1672304486868,
        "data": [
            {
                "T": 1672304486865,
                "s": "BTCUSDT",
                "S": "Buy",
                "v": "0.001",
                "p": "16578.50",
                "L": "PlusTick",
                "i": "20f43950-d8dd-5b31-9112-a178eb6023af",
                "BT": False,
            }
        ],
    }
    trade = Bybit().parse(json.dumps(frame)).items[0]
    assert trade == Trade(
        "BTCUSDT",
        "20f43950-d8dd-5b31-9112-a178eb6023af",
        Decimal("16578.5"),
        Decimal("0.001"),
        "buy",
        1672304486865,
    )
    book = {
        "topic": "orderbook.1.BTCUSDT",
        "type": "snapshot",
        "ts": 1672304484978,
        "data": {
            "s": "BTCUSDT",
            "b": [["16493.50", "0.006"]],
            "a": [["16611.00", "0.029"]],
            "u": 18521288,
            "seq": 7961638724,
        },
    }
    assert Bybit().parse(json.dumps(book)).items == [Quote("BTCUSDT", Decimal("16493.5"), Decimal("16611"))]
    delta = {**book, "type": "delta", "data": {**book["data"], "b": [], "a": [["16611.00", "0"]]}}
    assert Bybit().parse(json.dumps(delta)).items == [Quote("BTCUSDT", None, None)]  # nothing new to say


def test_bybit_pong_subscribe_and_ping_frames() -> None:
    pong = {"success": True, "ret_msg": "pong", "conn_id": "0970e817", "req_id": "", "op": "ping"}
    assert Bybit().parse(json.dumps(pong)).items == [Notice("pong")]
    args = [f"publicTrade.S{i}USDT" for i in range(6)]
    frames = [json.loads(f) for f in Bybit().subscribe_frames([f"S{i}USDT" for i in range(6)])]
    assert [len(f["args"]) for f in frames] == [10, 2]  # at most 10 topics a request on spot
    assert set(args) <= {a for f in frames for a in f["args"]}
    assert json.loads(Bybit().ping_frame() or "")["op"] == "ping"


def test_bybit_rest_recent_trades() -> None:
    payload = {
        "retCode": 0,
        "retMsg": "OK",
        "result": {
            "category": "spot",
            "list": [
                {
                    "execId": "2100000000007764263",
                    "symbol": "BTCUSDT",
                    "price": "16618.49",
                    "size": "0.00012",
                    "side": "Buy",
                    "time": "1672052955758",
                    "isBlockTrade": False,
                }
            ],
        },
        "retExtInfo": {},
        "time": 1672053054358,
    }
    assert bybit_rest(payload) == [
        Trade("BTCUSDT", "2100000000007764263", Decimal("16618.49"), Decimal("0.00012"), "buy", 1672052955758)
    ]
    with pytest.raises(FrameError, match="params error"):
        bybit_rest({"retCode": 10001, "retMsg": "params error"})


# OKX ---------------------------------------------------------------------------------------------


def test_okx_aggregated_trade_covers_count_ids() -> None:
    frame = {
        "arg": {"channel": "trades", "instId": "BTC-USDT"},
        "data": [
            {
                "instId": "BTC-USDT",
                "tradeId": "130639474",
                "px": "42219.9",
                "sz": "0.12060306",
                "side": "buy",
                "ts": "1630048897897",
                "count": "3",
            }
        ],
    }
    trade = Okx().parse(json.dumps(frame)).items[0]
    assert trade == Trade(
        "BTC-USDT",
        "130639474",
        Decimal("42219.9"),
        Decimal("0.12060306"),
        "buy",
        1630048897897,
        seq=130639474,
        span=3,
    )


def test_okx_bbo_pong_and_events() -> None:
    bbo = {
        "arg": {"channel": "bbo-tbt", "instId": "BCH-USDT"},
        "data": [
            {
                "asks": [["111.06", "55154", "0", "2"]],
                "bids": [["111.05", "57745", "0", "2"]],
                "ts": "1670324386802",
                "seqId": 363996337,
            }
        ],
    }
    assert Okx().parse(json.dumps(bbo)).items == [Quote("BCH-USDT", Decimal("111.05"), Decimal("111.06"))]
    assert Okx().parse("pong").items == [Notice("pong")]
    assert Okx().ping_frame() == "ping"
    error = {"event": "error", "code": "60012", "msg": "Invalid request", "connId": "a4d3ae55"}
    assert Okx().parse(json.dumps(error)).items == [Notice("error", "60012: Invalid request")]


def test_okx_rest_history_trades() -> None:
    payload = {
        "code": "0",
        "msg": "",
        "data": [
            {
                "instId": "BTC-USDT",
                "side": "sell",
                "sz": "0.00001",
                "px": "29963.2",
                "tradeId": "242720720",
                "ts": "1654161646974",
            }
        ],
    }
    assert okx_rest(payload) == [
        Trade(
            "BTC-USDT",
            "242720720",
            Decimal("29963.2"),
            Decimal("0.00001"),
            "sell",
            1654161646974,
            seq=242720720,
        )
    ]


# What every parser refuses -------------------------------------------------------------------------

VENUES = {"binance": Binance, "coinbase": Coinbase, "kraken": Kraken, "bybit": Bybit, "okx": Okx}


@pytest.mark.parametrize("venue", list(VENUES))
@pytest.mark.parametrize(
    ("frame", "reason"),
    [("{not json", "malformed JSON"), ("[1, 2]", "expected a JSON object"), (b"\xff\xfe", "malformed JSON")],
)
def test_unreadable_frames_are_refused_with_a_reason(venue: str, frame: Any, reason: str) -> None:
    with pytest.raises(FrameError, match=reason):
        VENUES[venue]().parse(frame)


BAD_TRADES: dict[str, tuple[dict[str, Any], str, str]] = {
    "binance": (
        {
            "stream": "btcusdt@trade",
            "data": {"e": "trade", "s": "BTCUSDT", "t": 1, "p": "1.5", "T": 1672515782136, "m": True},
        },
        "data.q: missing",
        "BTCUSDT",
    ),
    "coinbase": (
        {
            "type": "match",
            "trade_id": 1,
            "product_id": "BTC-USD",
            "size": "1",
            "price": "1",
            "side": "up",
            "time": "2014-11-07T08:19:27.028459Z",
        },
        "match.side: expected buy or sell",
        "BTC-USD",
    ),
    "kraken": (
        {
            "channel": "trade",
            "type": "update",
            "data": [
                {
                    "symbol": "BTC/USD",
                    "side": "buy",
                    "price": 1,
                    "qty": 1,
                    "trade_id": 5,
                    "timestamp": "yesterday",
                }
            ],
        },
        "not an RFC 3339 time",
        "BTC/USD",
    ),
    "bybit": (
        {
            "topic": "publicTrade.BTCUSDT",
            "data": [{"T": "soon", "s": "BTCUSDT", "S": "Buy", "v": "1", "p": "1", "i": "x"}],
        },
        "data[0].T: expected an integer",
        "BTCUSDT",
    ),
    "okx": (
        {
            "arg": {"channel": "trades", "instId": "BTC-USDT"},
            "data": [
                {
                    "instId": "BTC-USDT",
                    "tradeId": "7",
                    "px": "NaN",
                    "sz": "1",
                    "side": "buy",
                    "ts": "1630048897897",
                }
            ],
        },
        "not a finite number",
        "BTC-USDT",
    ),
}


@pytest.mark.parametrize("venue", ["binance", "coinbase"])
def test_a_bad_single_trade_frame_is_refused_naming_field_and_instrument(venue: str) -> None:
    frame, reason, symbol = BAD_TRADES[venue]
    with pytest.raises(FrameError, match=reason) as refused:
        VENUES[venue]().parse(json.dumps(frame))
    assert refused.value.venue_symbol == symbol


@pytest.mark.parametrize("venue", ["kraken", "bybit", "okx"])
def test_a_bad_trade_in_a_list_is_an_error_of_the_frame_naming_field_and_instrument(venue: str) -> None:
    frame, reason, symbol = BAD_TRADES[venue]
    parsed = VENUES[venue]().parse(json.dumps(frame))
    assert parsed.items == []
    assert reason in parsed.errors[0]
    assert parsed.venue_symbol == symbol


def test_the_valid_trades_of_a_frame_survive_a_bad_one() -> None:
    frame = {
        "channel": "trade",
        "type": "update",
        "data": [
            {
                "symbol": "BTC/USD",
                "side": "buy",
                "price": 1,
                "qty": 1,
                "trade_id": 5,
                "timestamp": "2023-09-25T07:49:37Z",
            },
            {
                "symbol": "BTC/USD",
                "side": "buy",
                "price": "abc",
                "qty": 1,
                "trade_id": 6,
                "timestamp": "2023-09-25T07:49:37Z",
            },
        ],
    }
    parsed = Kraken().parse(json.dumps(frame))
    assert [t.trade_id for t in parsed.items if isinstance(t, Trade)] == ["5"]
    assert parsed.errors == ["trade.data[1].price: 'abc' is not a number"]


@pytest.mark.parametrize(
    ("text", "ms"),
    [
        ("2014-11-07T08:19:27.028459Z", 1415348367028),
        ("2023-06-23T20:31:56.121961769Z", 1687552316121),  # nanoseconds: truncated, not rounded
        ("2023-06-23T20:31:56Z", 1687552316000),
        ("2023-06-23T22:31:56.5+02:00", 1687552316500),
        ("2023-06-23 20:31:56.1", 1687552316100),  # no offset: UTC
    ],
)
def test_rfc3339_times_to_epoch_ms(text: str, ms: int) -> None:
    assert iso_ms(text, "t") == ms


async def test_rest_ranges_need_ids_where_the_venue_pages_by_id() -> None:
    # Without ids there is nothing to ask for: no request is made (the REST client would fail the test).
    wanted = TradeRange("BTCUSDT", since_ms=1)
    assert await Binance().fetch_trades(None, wanted, 10) == []  # type: ignore[arg-type]
    assert await Okx().fetch_trades(None, wanted, 10) == []  # type: ignore[arg-type]
