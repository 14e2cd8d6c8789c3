"""Shared code of the workspace registry functions (deployed as a Lambda layer).

One module per concern, so a reader finds each by its name:

- settings:   configuration read once per container from the environment
- models:     request payload models (the seed's wire format)
- urlguard:   the SSRF guard for agent URLs (seed: validateAgentURL)
- tokens:     workspace auth tokens (mint, hash, bearer parsing)
- status:     the pure status rules of a heartbeat (seed: evaluateStatus)
- statements: every Postgres statement, found by its operation's name, and
              the dataclass each request operation's row is read into
- sql/:       the request functions, one file per operation (register.sql,
              heartbeat.sql, ...), with the rule each guards; authorize.sql
              is the token gate, event.sql the shape of an event row,
              can_communicate.sql the org hierarchy's access rule
- db:         the Postgres connection, opened once per container
- dbsecret:   the DSN from a Secrets Manager secret (in AWS)
- liveness:   the Redis keys (liveness, URL caches, runtime overrides,
              discovery's fast path)
- events:     the EventBridge envelope, publisher and marking of delivery
- api:        HTTP glue shared by the handlers (body parsing, errors, auth)
- service:    the operations the handlers call (the writes)
- discovery:  the read side: discover, peers, check-access (seed discovery.go)
- observability: Powertools Logger, Metrics and (when traced) Tracer
- sweep:      the liveness sweep; selfpreservation: its pure rule
- relay:      publishes recorded events not yet published
- provision:  one-time registration secrets
- fleet:      the operators' read API (GET /admin/...): list, detail,
              change feed, summary, with their cursors
- query:      query-string parameters of the read routes, read strictly
- admin:      the operators' command line, ``python -m registry.admin``
- migrate:    applies the schema migrations (migrations/) and the request
              functions (sql/), see its docstring for versioning
"""
