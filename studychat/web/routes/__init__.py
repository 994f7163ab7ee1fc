"""The HTTP routes, one module per area: chat, stream, records, health, metrics, demo."""
