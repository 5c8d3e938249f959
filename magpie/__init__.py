"""Magpie: alignment data synthesised from aligned chat models prompted with nothing."""

__version__ = "0.1.0"
