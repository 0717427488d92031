"""The cost of a rate-limit check: memory vs a Redis round trip, next to a bare PING."""
