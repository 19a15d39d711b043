"""Helpers shared by the tests and the benchmarks: real processes, ledgers, fakes."""
