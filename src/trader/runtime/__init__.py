"""The plumbing every service shares: settings, logs, metrics, HTTP probes, NATS, shutdown."""
