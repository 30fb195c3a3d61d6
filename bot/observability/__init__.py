"""Metrics, structured logs and the health endpoints: what an operator sees of a running bot."""
