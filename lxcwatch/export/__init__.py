"""Serving: metric families from snapshots, the text writer, the HTTP server, web config and basic auth."""
