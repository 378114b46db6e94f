"""What an operator does and reads, for the CLI (``trader.cli``) and the api (``trader.api``) alike:
orders, cancels and the trading switch (actions.py), the orders view from the ORDERS stream
(orders.py). Above the bus and the domain packages; nothing here knows the runtime or a service."""
