"""asyncio I/O around the sans-I/O wallbox: websockets, timers, reconnects."""
