"""The probe's local state: the spool of signed records, the key and config paths."""
