"""Risk: the limits, the pre-trade checks on every order request, and the post-trade watch on equity."""

from trader.risk.checks import PostTradeRisk, PreTradeRisk
from trader.risk.limits import RiskLimits

__all__ = ["PostTradeRisk", "PreTradeRisk", "RiskLimits"]
