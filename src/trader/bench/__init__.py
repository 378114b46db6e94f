"""Benchmarks: commands that drive the real stack and print figures."""
