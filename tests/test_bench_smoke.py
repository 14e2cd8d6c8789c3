"""``make bench`` at tiny sizes, so the benchmark cannot rot.

Runs ``python -m bench --smoke`` (every section: latency and round trips,
cold start, HTTP, sweep, fleet view) against this session's Postgres and Redis and
checks that results.json has every figure, each positive and finite, and
that the plot was drawn. The figures themselves are never compared with
the targets: at these sizes, on a shared test machine, they mean nothing.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
OPS = ("heartbeat_steady", "heartbeat_postgres", "heartbeat_change", "register", "update_card", "discover_hit", "discover_miss", "peers")
# The read side's round trips are exact (DESIGN.md): (Postgres, Redis) per call.
READ_ROUND_TRIPS = {"discover_hit": (0, 1), "discover_miss": (1, 2), "peers": (1, 0)}
LEVELS = ("service", "parsed", "handler")
SUMMARY = ("n", "median_ms", "p90_ms", "p99_ms", "mean_ms", "min_ms", "max_ms")


def positive(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0


def non_negative(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value >= 0


def check_summary(s: dict, *, n: int | None = None, allow_zero: bool = False) -> None:
    assert set(SUMMARY) <= set(s), s
    if n is not None:
        assert s["n"] == n
    ok = non_negative if allow_zero else positive
    for key in SUMMARY[1:]:
        assert ok(s[key]), (key, s)
    assert s["min_ms"] <= s["median_ms"] <= s["p99_ms"] <= s["max_ms"]


@pytest.mark.slow
def test_bench_runs_at_tiny_sizes_and_writes_every_figure(servers, tmp_path):
    env = dict(os.environ, DATABASE_URL=servers.database_url, REDIS_URL=servers.redis_url)
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke", "--out", str(tmp_path)],
        check=False,
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    assert "Targets" in done.stdout  # the table was printed

    results = json.loads((tmp_path / "results.json").read_text())
    iterations = results["config"]["iterations"]
    assert results["meta"]["trace_disabled"] == "true"
    assert positive(results["meta"]["seconds"])

    lat = results["latency"]
    check_summary(lat["floor"]["floor"], n=iterations * len(OPS))
    for key in ("postgres_select_1", "redis_ping", "redis_pipeline_1_command"):
        check_summary(lat["floor"][key])
    for key in ("tight_loop_before", "tight_loop_after"):
        check_summary(lat["floor"][key]["floor"], n=iterations)
    for name in OPS:
        op = lat["operations"][name]
        check_summary(op["floor"]["floor"], n=iterations)
        for level in LEVELS:
            check_summary(op[level]["total"], n=iterations)
            check_summary(op[level]["without_put_events"], n=iterations)
            check_summary(op[level]["put_events"], n=iterations, allow_zero=True)
            assert positive(op[level]["ratio_median"]) and positive(op[level]["ratio_p99"])
        assert positive(op["handler"]["ratio_median_tight_floor"])
        for key in ("powertools_overhead_ms", "parse_overhead_ms"):
            assert math.isfinite(op[key])
        parts = op["breakdown_mean_ms"]
        rt = op["round_trips"]
        assert positive(parts["total"]) and (name in ("update_card", "peers") or positive(parts["redis"]))
        assert all(math.isfinite(parts[k]) for k in ("postgres", "marking", "put_events", "python"))
        if name in READ_ROUND_TRIPS:
            assert (rt["postgres_round_trips"], rt["redis_round_trips"]) == READ_ROUND_TRIPS[name], (name, rt)
        if name in ("heartbeat_steady", "discover_hit"):
            # Redis alone: no statement to replay
            assert parts["postgres"] == 0 and op["sql_anatomy"] is None
        if name == "heartbeat_steady":
            assert (rt["postgres_round_trips"], rt["redis_round_trips"], rt["put_events_calls"]) == (0, 1, 0)
            assert op["service_target_ratio"] == 1.0 and isinstance(op["service_target_met"], bool)
        elif name != "discover_hit":
            assert positive(parts["postgres"])
            anatomy = op["sql_anatomy"]
            assert anatomy["statement"] in ("HEARTBEAT", "REGISTER", "UPDATE_CARD", "DISCOVER", "PEERS")
            for key in ("as_sent", "parse_and_plan", "as_sent_async_commit"):
                assert positive(anatomy[key])
            assert rt["postgres_round_trips"] >= 1
        assert rt["calls"] > 0
        for key in ("redis_round_trips", "redis_commands", "put_events_calls", "put_events_entries"):
            assert non_negative(rt[key])
        assert (op["target_ratio"] is None) == (op["target_met"] is None)
    # PutEvents is timed on the operations that publish on every call.
    for name in ("heartbeat_change", "register", "update_card"):
        assert positive(lat["operations"][name]["handler"]["put_events"]["median_ms"])

    cold = results["cold_start"]
    for key in ("baseline_import", "heartbeat_total", "heartbeat_import", "heartbeat_first_call", "heartbeat_second_call"):
        check_summary(cold[key], n=cold["runs"])
    assert positive(cold["ratio_median"])
    assert cold["importtime"]["by_top_level_package_ms"] and cold["importtime"]["heaviest_cumulative"]
    assert isinstance(cold["heartbeat_imports_boto3"], bool)

    http = results["http"]
    assert http["requests"] == results["config"]["http_requests"] and http["failures"] == 0
    assert positive(http["requests_per_second"])
    check_summary(http["latency"], n=http["requests"])

    steady = results["steady"]
    assert steady["heartbeats"] == 2 * steady["agents"] * steady["minutes"] == sum(steady["paths"].values())
    # one agent in fifty changes something each minute; everything else is steady
    assert steady["paths"]["steady"] >= steady["heartbeats"] - 2 * steady["changing_per_minute"] * steady["minutes"]
    assert 0 < steady["request_statements_per_1000_per_minute"] < 2000 and "FLUSH_BEATS" in steady["statements_per_1000_per_minute"]

    sweep = results["sweep"]
    assert sweep["sizes"] == [100, 1000]
    for size in sweep["sizes"]:
        entry = sweep["by_size"][str(size)]
        assert non_negative(entry["insert_seconds"])
        flush = entry["flush"]
        assert flush["redis_ok"] and flush["written"] == flush["workspaces"] == size and positive(flush["seconds"])
        assert flush["statements"]["FLUSH_BEATS"] == -(-size // 1000)  # one statement per 1,000 workspaces
        for key in (
            "none_silent",
            "one_percent_cap_500_stale_stats",
            "one_percent_all_stale_stats",
            "one_percent_cap_500_fresh_stats",
            "one_percent_all_fresh_stats",
        ):
            scenario = entry[key]
            assert scenario["failed"] == 0, scenario["failures"]
            check_summary(scenario["total"], n=scenario["runs"])
            assert all(non_negative(v) for v in scenario["parts_median_ms"].values())
        assert entry["none_silent"]["silent_seen"] == 0 and entry["none_silent"]["expired_per_sweep"] == 0
        assert (
            entry["one_percent_all_fresh_stats"]["expired_per_sweep"] == entry["one_percent_all_fresh_stats"]["silent_seen"] == size // 100
        )
    largest = sweep["by_size"]["1000"]
    check_summary(largest["handler_none_silent"]["total"])
    for key in ("first_sweep", "second_sweep", "after_vacuum"):
        check_summary(largest["churn"][key]["total"])

    fleet = results["fleet"]
    assert fleet["fleet"] == 1000 and fleet["events"] > 1000 and positive(fleet["fixture_seconds"])
    names = [s["name"] for s in fleet["scenarios"]]
    assert len(names) == len(set(names)) >= 15 and "summary" in names
    for scenario in fleet["scenarios"]:
        check_summary(scenario["route"], n=fleet["reps"])
        assert scenario["statements"] == 1, scenario["name"]  # one statement per read
        assert scenario["scans"] and non_negative(scenario["rows_read"]) and "Scan" in scenario["plan"]
        assert isinstance(scenario["seq_scans_of_large_tables"], list)
    assert isinstance(fleet["all_on_an_index"], bool) and positive(fleet["slowest_median_ms"])
    assert "8. Fleet view" in done.stdout

    assert {t["name"] for t in results["targets"]} and all(isinstance(t["met"], bool) for t in results["targets"])
    assert (tmp_path / "latency.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
