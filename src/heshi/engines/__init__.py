"""Engines: the things that actually produce tokens (in-process llama.cpp, remote HTTP)."""
