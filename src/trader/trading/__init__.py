"""Helpers the trading services and the CLI share: the trading switch, and reading the trading streams."""
