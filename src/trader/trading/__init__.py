"""Helpers the trading services and the CLI share: the trading switch, and the orders' latest states."""
