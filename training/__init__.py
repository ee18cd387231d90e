"""Training: record Melting Pot episodes, store them, train the world model (see docs/ARCHITECTURE.md)."""
