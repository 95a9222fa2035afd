"""voipwatch collector: registration, signed ingest, storage, test helper, exports."""

__version__ = "0.1.0"
