"""wsmon's server: the aiohttp WebSocket server, its worker pool, and everything it exports."""
