"""The local stack: the three servers, the services, and the supervisor that runs them."""
