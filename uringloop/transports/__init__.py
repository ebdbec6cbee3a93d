"""Transports: one module per kind of handle, as asyncio names them."""
