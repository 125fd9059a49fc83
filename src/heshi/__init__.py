"""Heshi (合适): the right Qwen for your hardware and your rules."""

__version__ = "0.1.0"
