"""wsmon loadtest: an open-model WebSocket load generator for CI."""
