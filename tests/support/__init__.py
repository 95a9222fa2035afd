"""Real servers on loopback for the tests: each an async context manager that
binds 127.0.0.1:0 and can be told to misbehave the way a censor would."""
