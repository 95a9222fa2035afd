"""Sockets and flows: the transport. Raises transport errors; never builds observations."""
