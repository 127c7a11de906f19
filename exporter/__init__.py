"""wsmon: a WebSocket server built to be watched."""

__version__ = "0.1.0"
