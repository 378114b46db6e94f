"""The message bus: NATS JetStream streams, connections, publishing, reading and dead letters."""
