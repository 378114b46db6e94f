"""The api's routes, one module per area: reads, actions, live (the WebSocket)."""
