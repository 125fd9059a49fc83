"""Routing: which engine answers a public model name."""
