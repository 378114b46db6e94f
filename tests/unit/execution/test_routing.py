from __future__ import annotations

from decimal import Decimal as D

import pytest

from trader.execution.routing import RouteChoice, RoutingError, VenueQuote, choose_venue, venue_without_choice
from trader.messages import Order, OrderRequest


def request(side: str = "buy", venue: str | None = None) -> OrderRequest:
    return OrderRequest(
        client_order_id="c1",
        strategy="s1",
        symbol="BTCUSDT",
        side=side,  # type: ignore[arg-type]
        quantity=D("1"),
        venue=venue,
    )


def quote(venue: str, bid: str | None, ask: str | None, fee_bps: str = "0") -> VenueQuote:
    return VenueQuote(
        venue,
        bid=None if bid is None else D(bid),
        ask=None if ask is None else D(ask),
        taker_fee_bps=D(fee_bps),
    )


# The cheaper raw quote loses once fees are counted.
VENUES = [
    quote("cheap-quote", bid="100.00", ask="100.00", fee_bps="20"),  # buy 100.2, sell 99.8
    quote("cheap-fee", bid="99.90", ask="100.10", fee_bps="5"),  # buy 100.15005, sell 99.85005
]


def test_buy_goes_to_the_lowest_ask_net_of_fees() -> None:
    assert choose_venue(request("buy"), VENUES) == RouteChoice("cheap-fee", "best net price", D("100.15005"))


def test_sell_goes_to_the_highest_bid_net_of_fees() -> None:
    assert choose_venue(request("sell"), VENUES) == RouteChoice("cheap-fee", "best net price", D("99.85005"))


def test_without_fees_the_best_raw_quote_wins() -> None:
    venues = [quote("a", "99.9", "100.1"), quote("b", "100.0", "100.2")]
    assert choose_venue(request("buy"), venues).venue == "a"
    assert choose_venue(request("sell"), venues).venue == "b"


def test_venues_without_the_needed_side_are_skipped() -> None:
    venues = [quote("no-ask", "101", None), quote("has-ask", "99", "102", fee_bps="10")]
    choice = choose_venue(request("buy"), venues)
    assert choice == RouteChoice("has-ask", "best net price", D("102.102"))
    assert choose_venue(request("sell"), venues).venue == "no-ask"


def test_a_tie_goes_to_the_venue_configured_first() -> None:
    venues = [quote("first", "99", "100"), quote("second", "99", "100")]
    assert choose_venue(request("buy"), venues).venue == "first"
    assert choose_venue(request("sell"), venues).venue == "first"


def test_the_order_names_its_venue() -> None:
    choice = choose_venue(request("buy", venue="cheap-quote"), VENUES, fixed_venue="cheap-fee")
    assert choice == RouteChoice("cheap-quote", "fixed by order")


def test_the_config_names_the_venue() -> None:
    assert choose_venue(request("buy"), VENUES, fixed_venue="cheap-quote") == RouteChoice(
        "cheap-quote", "fixed by config"
    )


def test_a_fixed_venue_must_be_configured_for_the_symbol() -> None:
    with pytest.raises(RoutingError, match="'elsewhere' is not configured for BTCUSDT"):
        choose_venue(request("buy", venue="elsewhere"), VENUES)
    with pytest.raises(RoutingError, match="'elsewhere' is not configured"):
        choose_venue(request("buy"), VENUES, fixed_venue="elsewhere")


def test_one_venue_passes_through_even_without_a_quote() -> None:
    assert choose_venue(request("buy"), [quote("only", None, None)]) == RouteChoice("only", "only venue")


def test_no_venue_with_a_quote_is_a_clear_error() -> None:
    venues = [quote("a", None, None), quote("b", "100", None)]
    with pytest.raises(RoutingError, match="no venue quotes BTCUSDT for a buy: no ask at a, b"):
        choose_venue(request("buy"), venues)


def test_no_venue_configured_is_a_clear_error() -> None:
    with pytest.raises(RoutingError, match="no venue is configured for BTCUSDT"):
        choose_venue(request("buy"), [])


def test_an_oms_order_routes_too() -> None:
    order = Order(
        client_order_id="c1",
        strategy="s1",
        account="paper",
        symbol="BTCUSDT",
        side="sell",
        type="market",
        quantity=D("1"),
        status="ACCEPTED",
    )
    assert choose_venue(order, VENUES).venue == "cheap-fee"


def test_net_price_is_exact() -> None:
    assert quote("x", "100", "100", fee_bps="7.5").net_price("buy") == D("100.075")
    assert quote("x", "100", "100", fee_bps="7.5").net_price("sell") == D("99.925")
    assert quote("x", None, None).net_price("buy") is None


@pytest.mark.parametrize(
    ("requested", "configured", "fixed", "run", "expected"),
    [
        (None, ["paper"], None, {"paper"}, "paper"),  # the only venue
        (None, ["a", "b"], None, {"a", "b"}, None),  # a choice on price: the router's
        (None, ["a", "b"], "b", {"a", "b"}, "b"),  # fixed by the config
        ("a", ["a", "b"], "b", {"a", "b"}, "a"),  # named by the order, before the config's
        ("c", ["a", "b"], None, {"a", "b", "c"}, None),  # not configured for the symbol: the router refuses
        (None, ["a"], None, {"b"}, None),  # not run by exeq: the router refuses
        (None, [], None, {"a"}, None),  # nothing configured: the router refuses
    ],
)
def test_a_venue_without_choice_is_one_the_router_would_take_as_is(
    requested: str | None, configured: list[str], fixed: str | None, run: set[str], expected: str | None
) -> None:
    venue = venue_without_choice("BTCUSDT", requested, configured=configured, fixed_venue=fixed, run=run)
    assert venue == expected
