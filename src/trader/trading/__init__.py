"""Helpers the trading services and the CLI share: the trading switch, the orders' latest states,
and forgetting ended orders after a retention."""
