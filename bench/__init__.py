"""``make bench``: latency, round trips, cold start, sweep scale and HTTP
throughput of the registry on this machine, against embedded Postgres,
Redis and moto. See docs/bench.md for what each figure means.

Modules:

- common:    environment, servers, statistics, the stdout sink
- latency:   warm in-process latency of each operation against the floor,
             and round trips counted at the drivers
- coldstart: a fresh interpreter importing the heartbeat function and
             answering its first heartbeat, against a baseline import
- sweepscale: the liveness sweep at fleet sizes up to 1,000,000
- httpload:  the local API over HTTP with concurrent clients
- report:    the table, results.json and the plot
- run:       the command line (``python -m bench``)
"""
