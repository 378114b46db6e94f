"""Streaming features of bars: one interface, one small class per feature, O(1) per bar.

The feature set comes from settings (``config``); ``engine`` keeps a set per (venue, symbol, timeframe).
Pure: no I/O. The service (``trader.services.feature_eng``) wires it to the bus and the stores.
"""
