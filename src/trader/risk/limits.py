"""The risk limits, as settings (nested into the project's ``Settings`` as ``risk``).

Every money and quantity limit is a ``Decimal``; a YAML or environment value such as ``"0.1"`` is
read exactly. Notionals are in the quote currency.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated

from pydantic import BaseModel, Field

PositiveDecimal = Annotated[Decimal, Field(gt=0)]


class RiskLimits(BaseModel):
    max_order_notional: Decimal = Field(Decimal("100000"), gt=0, description="Quantity x price, per order")
    max_position_per_symbol: Decimal = Field(
        Decimal("10"), gt=0, description="|net position| per account and symbol, with open orders"
    )
    position_limit_overrides: dict[str, PositiveDecimal] = Field(
        default_factory=dict, description="max_position_per_symbol for named symbols"
    )
    max_gross_exposure: Decimal = Field(
        Decimal("500000"), gt=0, description="Sum of |position| x last price, plus open orders"
    )
    price_band_pct: Decimal = Field(
        Decimal("5"), gt=0, description="An order's price may be at most this % away from the last trade"
    )
    # A count of orders, not an amount: an int.
    max_orders_per_second: int = Field(10, gt=0, description="Approved orders per strategy, sliding 1 s")
    max_daily_loss: Decimal = Field(Decimal("10000"), gt=0, description="Loss since the UTC day's start")
    max_drawdown: Decimal = Field(Decimal("20000"), gt=0, description="Loss from the highest equity seen")

    def position_limit(self, symbol: str) -> Decimal:
        return self.position_limit_overrides.get(symbol, self.max_position_per_symbol)
