"""The api's request bodies. pydantic validates them, so a body that is not a valid order is answered
422 with each field and the reason (FastAPI's ``detail: [{loc, msg, type}]``), before anything is sent.
Decimals are accepted as strings (``"0.01"``, exact) or JSON numbers; never turned into binary floats."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from trader.control.actions import new_client_order_id, now_ms, order_type
from trader.messages import OrderRequest
from trader.risk.checks import MANUAL_STRATEGY

TOKEN = r"^[A-Za-z0-9_-]{1,64}$"  # a subject token: strategy, venue, account
SYMBOL = r"^[A-Za-z0-9_-]{1,32}$"


def _positive(value: Decimal) -> Decimal:
    if not value.is_finite():
        raise ValueError("must be a finite number")
    if value <= 0:
        raise ValueError("must be greater than 0")
    return value


# Strictly a decimal (a string or a JSON number read as one); pydantic refuses "abc", NaN and Infinity.
PositiveDecimal = Annotated[Decimal, Field(allow_inf_nan=False), AfterValidator(_positive)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a misspelt field is an error, not a default


class OrderBody(_Body):
    """An order, as `trader order` makes it; ``type`` follows from the prices."""

    symbol: str = Field(pattern=SYMBOL, examples=["BTCUSDT"])
    side: Literal["buy", "sell"]
    quantity: PositiveDecimal = Field(examples=["0.01"])
    price: PositiveDecimal | None = Field(default=None, description="limit price")
    stop_price: PositiveDecimal | None = Field(default=None, description="trigger price")
    tif: Literal["GTC", "IOC", "FOK"] = "GTC"
    post_only: bool = False
    reduce_only: bool = False
    venue: str | None = Field(default=None, pattern=TOKEN, description="a fixed venue; none: the router's")
    account: str = Field(default="paper", pattern=TOKEN)
    strategy: str = Field(default=MANUAL_STRATEGY, pattern=TOKEN)
    algo: Literal["twap", "iceberg"] | None = None
    algo_params: dict[str, str] = Field(default_factory=dict)
    client_order_id: str | None = Field(
        default=None, pattern=r"^[A-Za-z0-9_.:-]{1,96}$", description="default: <strategy>-<random>"
    )

    def request(self) -> OrderRequest:
        return OrderRequest(
            client_order_id=self.client_order_id or new_client_order_id(self.strategy),
            strategy=self.strategy,
            symbol=self.symbol,
            side=self.side,
            quantity=self.quantity,
            type=order_type(self.price, self.stop_price),
            price=self.price,
            stop_price=self.stop_price,
            tif=self.tif,
            post_only=self.post_only,
            reduce_only=self.reduce_only,
            account=self.account,
            venue=self.venue,
            algo=self.algo,
            algo_params=dict(self.algo_params),
            timestamp=now_ms(),
        )


class CancelBody(_Body):
    reason: str = Field(default="canceled by operator", max_length=500)


class CancelAllBody(_Body):
    strategy: str | None = Field(default=None, pattern=TOKEN)
    symbol: str | None = Field(default=None, pattern=SYMBOL)
    reason: str = Field(default="canceled by operator", max_length=500)


class SwitchBody(_Body):
    reason: str | None = Field(default=None, max_length=500)


class ReplayBody(_Body):
    service: str | None = Field(default=None, max_length=64)
    reason: str | None = Field(default=None, max_length=500, description="only reasons containing this")
    include_late: bool = False
    dry_run: bool = False
    limit: int = Field(default=10_000, ge=1, le=100_000)
