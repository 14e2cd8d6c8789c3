"""Shared code of the workspace registry functions (deployed as a Lambda layer).

One module per concern, so a reader finds each by its name:

- settings:   configuration read once per container from the environment
- models:     request payload models (the seed's wire format)
- urlguard:   the SSRF guard for agent URLs (seed: validateAgentURL)
- tokens:     workspace auth tokens (mint, hash, bearer parsing)
- status:     the pure status rules of a heartbeat (seed: evaluateStatus)
- statements: every Postgres statement, one per operation
- db:         the Postgres connection, opened once per container
- dbsecret:   the DSN from a Secrets Manager secret (in AWS)
- liveness:   the Redis keys (liveness, URL caches, runtime overrides)
- events:     the EventBridge publisher and the event envelope
- api:        HTTP glue shared by the handlers (body parsing, errors, auth)
- service:    the operations the handlers call
- observability: Powertools Logger, Metrics and (when traced) Tracer
- sweep:      the liveness sweep; selfpreservation: its pure rule
- relay:      publishes recorded events not yet published
- provision:  one-time registration secrets
- migrate:    applies the SQL migrations in order (migrations/)
"""
