"""The message bus: NATS JetStream streams, connections, publishing and dead letters."""
