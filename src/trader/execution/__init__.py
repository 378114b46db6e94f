"""The pure execution logic of the trading core: venue adapters, execution algos and venue routing.

Nothing here talks to NATS; the execution services wrap these pieces and move their messages.
"""
