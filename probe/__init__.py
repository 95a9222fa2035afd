"""voipwatch probe: measures whether VoIP services are reachable from this network."""

__version__ = "0.1.0"
