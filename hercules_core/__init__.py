"""Hercules: a distributed file system in the design of GFS, a small core plus plugins."""

__version__ = "0.1.0"
