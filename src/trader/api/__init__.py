"""The operator api's FastAPI app (served by the ``api`` service, ``trader.services.api``; docs/api.md).

``auth`` (bearer tokens, roles, the order rate limit), ``view`` (what the api serves, kept current
from the bus: pure, no I/O), ``live`` (the WebSocket's clients and what they asked for), ``schemas``
(request bodies), ``context`` (what the routes are handed), ``routes/`` (one module per area), ``app``.
"""
