"""Benchmarks: real and dream speed, fidelity against recorded real episodes; each writes results/*.json and .md."""
