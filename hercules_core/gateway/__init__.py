"""The gateway role: HTTP for clients that don't speak the native protocol."""
