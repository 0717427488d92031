"""Ledger throughput: reserve+settle pairs per second beside a bare INSERT per transaction."""
