"""`make bench`: wsmon measured side by side with bare aiohttp and websockets echo servers."""
