"""Registration with a collector, upload of the spool, offline verification of files."""
