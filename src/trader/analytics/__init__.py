"""Analytics on market data: higher timeframes, cross-venue spreads, streaming features."""
