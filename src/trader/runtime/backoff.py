"""``Backoff`` lives in the bus (``trader.bus.backoff``: the connection retries with it, and the bus imports
nothing above it); the runtime's users import it from here too."""

from trader.bus.backoff import Backoff

__all__ = ["Backoff"]
