"""Traces of a host: the tree format, capture from a live host, record and replay."""
