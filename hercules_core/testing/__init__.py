"""Test kits Hercules ships for plugin authors (e.g. ``store_contract`` for chunk stores)."""
