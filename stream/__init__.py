"""metasignal stream: scores committee votes and emits trade signals."""
