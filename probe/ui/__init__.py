"""The command line, the progress display and the results table."""
