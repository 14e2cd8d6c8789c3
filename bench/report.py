"""The printed table, results.json and the latency plot."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from bench.latency import LABELS, LEVELS, OPS


def _f(value: Any, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and not math.isfinite(value):
        return "nan"
    return f"{value:.{digits}f}"


def _verdict(met: bool | None) -> str:
    return "-" if met is None else ("met" if met else "MISSED")


def table(results: dict[str, Any]) -> str:
    meta = results["meta"]
    lines: list[str] = []
    add = lines.append
    add(f"Workspace registry benchmark  {meta['started_at']}  ({meta['seconds']:.0f} s)")
    load = "/".join(f"{x:.1f}" for x in meta.get("load_average_at_start", [])[:1] + meta.get("load_average_at_end", [])[:1])
    add(f"  machine   {meta['cpu']}, {meta['cpus']} CPUs, Python {meta['python']}; load average at start/end {load}")
    add(f"  servers   Postgres {meta['postgres']} and Redis {meta['redis']} on unix sockets; EventBridge = moto {meta['moto']} in process")
    add(
        "  settings  POWERTOOLS_TRACE_DISABLED=true (no X-Ray daemon); POWERTOOLS_LOG_LEVEL="
        + meta["log_level"]
        + "; the functions' stdout"
    )
    add("            (JSON logs, EMF metrics) goes to /dev/null during timing: built and written, not displayed")

    lat = results.get("latency")
    if lat:
        fl = lat["floor"]
        add("")
        add(f"1. Warm in-process latency, ms ({lat['iterations']} rounds per operation, pool of {lat['pool']} workspaces)")
        add("   each round: one floor sample and one call at each level, interleaved in rotating order")
        add(
            f"   floor = SELECT 1 + PING on the registry's own connections: median {_f(fl['floor']['median_ms'])}  p99 {_f(fl['floor']['p99_ms'])}"
            f"   (SELECT 1 {_f(fl['postgres_select_1']['median_ms'])}, PING {_f(fl['redis_ping']['median_ms'])};"
            f" a 1-command pipeline {_f(fl['redis_pipeline_1_command']['median_ms'])})"
        )
        tb, ta = fl["tight_loop_before"]["floor"], fl["tight_loop_after"]["floor"]
        add(
            f"   floor in a tight loop of its own, before/after: median {_f(tb['median_ms'])}/{_f(ta['median_ms'])}  p99 {_f(tb['p99_ms'])}/{_f(ta['p99_ms'])}"
            "  (x tight: handler median over the lower one)"
        )
        add(
            "   levels: handler = lambda_handler + API Gateway event; parsed = api.parse + service; "
            "service = registry.service.<op> (registry.discovery.<op> for the reads)"
        )
        add("   x floor = (time - time inside PutEvents) / floor of the same rounds, median/median (p99/p99); target on the handler median")
        header = (
            f"   {'operation':<30}{'level':<9}{'median':>8}{'p99':>8}{'PutEv':>8}{'rest':>8}{'rest99':>8}"
            f"{'floor':>8}{'x floor':>9}{'x p99':>7}{'x tight':>8}{'>floor':>8}  target"
        )
        add(header)
        add("   " + "-" * (len(header) - 3))
        for name in OPS:
            op = lat["operations"][name]
            own = op["floor"]["floor"]
            for level in reversed(LEVELS):
                row = op[level]
                first = level == "handler"
                target = ""
                if first and op["target_ratio"] is not None:
                    target = f"<= {op['target_ratio']:.1f}  {_verdict(op['target_met'])}"
                add(
                    f"   {(op['label'] if first else ''):<30}{level:<9}{_f(row['total']['median_ms']):>8}{_f(row['total']['p99_ms']):>8}"
                    f"{_f(row['put_events']['median_ms']):>8}{_f(row['without_put_events']['median_ms']):>8}{_f(row['without_put_events']['p99_ms']):>8}"
                    f"{(_f(own['median_ms']) if first else ''):>8}{_f(row['ratio_median'], 1):>9}{_f(row['ratio_p99'], 1):>7}"
                    f"{(_f(row['ratio_median_tight_floor'], 1) if first else ''):>8}"
                    f"{_f(row['above_floor_ms']):>8}  {target}"
                )
        add("")
        add("   where the time goes, ms per call (service level, means) and the handler's extra (medians)")
        add("   (marking = the extra round trip that marks published events, only when a recorded event was published)")
        add(f"   {'operation':<30}{'Postgres':>9}{'marking':>9}{'Redis':>8}{'PutEv':>8}{'Python':>8}{'parse':>8}{'Powertools':>11}")
        for name in OPS:
            op = lat["operations"][name]
            b = op["breakdown_mean_ms"]
            add(
                f"   {op['label']:<30}{_f(b['postgres']):>9}{_f(b.get('marking', 0.0)):>9}{_f(b['redis']):>8}{_f(b['put_events']):>8}"
                f"{_f(b['python']):>8}{_f(op['parse_overhead_ms']):>8}{_f(op['powertools_overhead_ms']):>11}"
            )
        an = {k: v for k, v in lat["operations"].items() if v.get("sql_anatomy")}
        if an:
            add("")
            add(
                "   the statement alone, replayed on its own connection, medians in ms (SELECT 1 there: "
                f"{_f(lat.get('select_1_alone_ms'))})"
            )
            add(f"   {'operation':<30}{'statement':<13}{'as sent':>8}{'parse+plan':>11}{'exec+commit':>12}{'WAL flush':>10}")
            for name in OPS:
                a = lat["operations"][name].get("sql_anatomy")
                if not a:
                    continue
                add(
                    f"   {LABELS[name]:<30}{a['statement']:<13}{_f(a['as_sent']):>8}{_f(a['parse_and_plan']):>11}"
                    f"{_f(a['execute_and_commit']):>12}{_f(a['commit_flush']):>10}"
                )

        add("")
        add("2. Round trips per call, counted at the drivers (psycopg2 cursor.execute, redis-py send_packed_command,")
        add("   botocore before-call.events.PutEvents) over the handler; Redis commands from INFO stats")
        add(f"   {'operation':<30}{'Postgres':>9}{'Redis':>7}{'(cmds)':>8}{'PutEvents':>11}{'(entries)':>10}   budget (DESIGN.md)")
        budget = {
            "heartbeat_steady": "0 PG, 1 Redis (one script), 0 PutEvents",
            "heartbeat_postgres": "1 PG, 1 Redis, 0 PutEvents",
            "heartbeat_change": "1 PG + 1 marking, 2 Redis (steady attempt, refresh), 1 PutEvents",
            "register": "1 PG + 1 marking, 1 Redis, 1 PutEvents",
            "update_card": "1 PG + 1 marking, 1 PutEvents",
            "discover_hit": "0 PG, 1 Redis (Redis alone when cached)",
            "discover_miss": "1 PG, Redis read + write",
            "peers": "1 PG",
        }
        for name in OPS:
            rt = lat["operations"][name]["round_trips"]
            add(
                f"   {LABELS[name]:<30}{rt['postgres_round_trips']:>9.2f}{rt['redis_round_trips']:>7.2f}{rt['redis_commands']:>8.2f}"
                f"{rt['put_events_calls']:>11.2f}{rt['put_events_entries']:>10.2f}   {budget[name]}"
            )

    cold = results.get("cold_start")
    if cold:
        add("")
        add(f"3. Cold start, ms (fresh interpreter, median of {cold['runs']}; measured inside the child, interpreter start-up excluded)")
        add(
            f"   baseline: import boto3, pydantic, psycopg2, redis           {_f(cold['baseline_import']['median_ms'], 1):>7}  ({cold['baseline_modules']} modules)"
        )
        add(
            f"   heartbeat: import app + first heartbeat (200)                {_f(cold['heartbeat_total']['median_ms'], 1):>7}"
            f"  = import {_f(cold['heartbeat_import']['median_ms'], 1)} + first call {_f(cold['heartbeat_first_call']['median_ms'], 1)}"
            f" (connects); second call {_f(cold['heartbeat_second_call']['median_ms'], 2)}  ({cold['heartbeat_modules']} modules)"
        )
        add(
            f"   ratio {_f(cold['ratio_median'], 2)}  target <= 1.0  {_verdict(cold['target_met'])};"
            f" imported on the heartbeat path: {', '.join(m for m, yes in cold['heartbeat_heavy_imports'].items() if yes) or 'no boto3/botocore.client/aws_xray_sdk'}"
        )
        it = cold["importtime"]
        heavy = ", ".join(f"{p['package']} {p['self_ms']:.0f}" for p in it["by_top_level_package_ms"][:8])
        add(f"   -X importtime, self time by top-level package (ms): {heavy}")

    sweep = results.get("sweep")
    if sweep:
        add("")
        add(f"4. Liveness sweep, ms (registry.sweep.run(); medians; LIVENESS_TTL_SECONDS={sweep['ttl_seconds']} for this section;")
        add("   stale stats = the silence began after the last ANALYZE, as in production; fresh = after ANALYZE)")
        add(f"   {'fleet':>10}  {'scenario':<44}{'silent':>8}{'expired':>8}{'total':>9}{'SQL':>8}{'PutEv':>8}{'Redis':>7}")
        for size in sweep["sizes"]:
            entry = sweep["by_size"][str(size)]
            for key, label in (
                ("none_silent", "none silent"),
                ("one_percent_cap_500_stale_stats", "1 % silent, cap 500, stale stats"),
                ("one_percent_all_stale_stats", "1 % silent, all in one sweep, stale stats"),
                ("one_percent_cap_500_fresh_stats", "1 % silent, cap 500, fresh stats"),
                ("one_percent_all_fresh_stats", "1 % silent, all in one sweep, fresh stats"),
            ):
                s = entry[key]
                if s["total"] is None:
                    f = s["failures"][0] if s["failures"] else {"seconds": float("nan"), "error": "?"}
                    add(
                        f"   {size:>10,}  {label:<44}{'':>8}{'':>8}  FAILED after {f['seconds'] * 1000:.0f} ms ({s['failed']}x): {f['error'][:60]}"
                    )
                    continue
                sql = sum(v for k, v in s["parts_median_ms"].items() if k.startswith("sql:"))
                fail = f"  (+{s['failed']} failed)" if s["failed"] else ""
                add(
                    f"   {size:>10,}  {label:<44}{s['silent_seen']:>8,}{s['expired_per_sweep']:>8,}{_f(s['total']['median_ms'], 1):>9}"
                    f"{_f(sql, 1):>8}{_f(s['put_events']['median_ms'], 1):>8}{_f(s['parts_median_ms'].get('redis:clear_many', 0.0), 1):>7}{fail}"
                )
            add(f"   {'':>10}  (inserted in {entry['insert_seconds']:.1f} s)")
        largest = sweep["by_size"][str(sweep["sizes"][-1])]
        handler = largest["handler_none_silent"]["total"]
        add(
            f"   none silent at {sweep['sizes'][-1]:,}: {_f(sweep['none_silent_median_ms'], 1)} ms, target <= 50  {_verdict(sweep['target_met'])};"
            f" through lambda_handler {_f(handler['median_ms'] if handler else None, 1)} ms"
        )
        churn = largest.get("churn")
        if churn:

            def t(x):
                return _f(x["total"]["median_ms"], 1) if x["total"] else "FAILED"

            add(
                f"   churn: {churn['dead_entries']:,} dead index entries below the cut-off (no VACUUM yet): first sweep "
                f"{t(churn['first_sweep'])}, second {t(churn['second_sweep'])}, after VACUUM ({churn['vacuum_seconds']:.1f} s) {t(churn['after_vacuum'])}"
            )

    steady = results.get("steady")
    if steady:
        add("")
        add(
            f"5. The steady heartbeat in a simulated fleet: {steady['agents']} agents, {steady['minutes']} simulated minutes,"
            f" {steady['changing_per_minute']} changing something each minute, a sweep each minute"
        )
        paths = ", ".join(f"{k} {v:,} ({v / steady['heartbeats']:.1%})" for k, v in sorted(steady["paths"].items(), key=lambda kv: -kv[1]))
        add(f"   {steady['heartbeats']:,} heartbeats: {paths}")
        per = steady["statements_per_1000_per_minute"]
        detail = ", ".join(f"{k} {v:.1f}" for k, v in sorted(per.items(), key=lambda kv: -kv[1]))
        add(
            f"   Postgres statements per 1,000 workspaces per minute: {steady['all_statements_per_1000_per_minute']:.1f} in all"
            f" (before the steady path: {steady['before_per_1000_per_minute']:.0f}); of them from requests"
            f" {steady['request_statements_per_1000_per_minute']:.1f}; by statement: {detail}"
        )

    if sweep:
        flushes = [(size, sweep["by_size"][str(size)].get("flush")) for size in sweep["sizes"]]
        flushes = [(size, f) for size, f in flushes if f]
        if flushes:
            add("")
            add("6. The sweep's write-behind of steady beats (sweep.flush(): a beat waiting for every workspace, verified and re-armed)")
            add(
                f"   one whole pass each; a sweep writes for at most {flushes[0][1]['budget_seconds']:.0f} s"
                " (suspected silent ones first) and the next resumes where it stopped"
            )
            add(f"   {'fleet':>10}  {'written':>9}{'seconds':>9}{'ms per 1,000':>14}{'statements':>12}{'per 1,000':>11}{'sweeps per pass':>17}")
            for size, f in flushes:
                add(
                    f"   {size:>10,}  {f['written']:>9,}{f['seconds']:>9.2f}{f['per_1000_workspaces_ms']:>14.1f}"
                    f"{sum(f['statements'].values()):>12,}{f['statements_per_1000_workspaces']:>11.1f}{f['sweeps_per_pass']:>17}"
                    + ("" if f["redis_ok"] else "  Redis did not answer: flush cut short")
                )

    http = results.get("http")
    if http:
        add("")
        add(f"7. HTTP, for information: {http['server']}")
        add(
            f"   {http['requests']} steady heartbeats, {http['clients']} concurrent clients on 127.0.0.1 (a new connection per request):"
            f" {http['requests_per_second']:.0f} req/s, median {_f(http['latency']['median_ms'], 2)} ms,"
            f" p99 {_f(http['latency']['p99_ms'], 2)} ms, non-200: {http['failures']}"
        )

    fleet = results.get("fleet")
    if fleet:
        add("")
        add(
            f"8. Fleet view (GET /admin/...) at {fleet['fleet']:,} workspaces and {fleet['events']:,} events: each read through"
            " registry.fleet (median ms), its statement EXPLAINed (ANALYZE)"
        )
        add(f"   {'read':<40}{'ms':>8}{'rows read':>11}  index walked (rows)")
        for s in fleet["scenarios"]:
            scans = ", ".join(f"{x['scan']} ({x['rows']:,})" for x in s["scans"][:3]) + (" ..." if len(s["scans"]) > 3 else "")
            seq = f"  SEQ SCAN of {', '.join(s['seq_scans_of_large_tables'])}" if s["seq_scans_of_large_tables"] else ""
            add(f"   {s['name']:<40}{_f(s['route']['median_ms'], 2):>8}{s['rows_read']:>11,}  {scans}{seq}")
        add(
            f"   every read on an index: {'yes' if fleet['all_on_an_index'] else 'NO'}; slowest {_f(fleet['slowest_median_ms'], 1)} ms;"
            f" at most {fleet['most_rows_read']:,} rows read; fixture built in {fleet['fixture_seconds']:.0f} s; full plans in results.json"
        )

    targets = results.get("targets") or []
    if targets:
        add("")
        add("Targets")
        for t in targets:
            add(f"   {t['name']:<48}{_f(t['value'], 2):>8}  target {t['target']:<10}{_verdict(t['met'])}")
    return "\n".join(lines)


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    lat = results.get("latency")
    if lat:
        for name in OPS:
            op = lat["operations"][name]
            if op["target_ratio"] is not None:
                out.append(
                    {
                        "name": f"{LABELS[name]}: handler median / floor",
                        "value": op["handler"]["ratio_median"],
                        "target": f"<= {op['target_ratio']}",
                        "met": op["target_met"],
                    }
                )
            if op.get("service_target_ratio") is not None:
                out.append(
                    {
                        "name": f"{LABELS[name]}: service median / floor",
                        "value": op["service"]["ratio_median"],
                        "target": f"<= {op['service_target_ratio']}",
                        "met": op["service_target_met"],
                    }
                )
    cold = results.get("cold_start")
    if cold:
        out.append({"name": "cold start / baseline import", "value": cold["ratio_median"], "target": "<= 1.0", "met": cold["target_met"]})
    sweep = results.get("sweep")
    if sweep:
        out.append(
            {
                "name": f"sweep, none silent, {sweep['sizes'][-1]:,} workspaces (ms)",
                "value": sweep["none_silent_median_ms"],
                "target": "<= 50",
                "met": sweep["target_met"],
            }
        )
    fleet = results.get("fleet")
    if fleet:
        # Issue #15: every list bounded and every query on an index at 1,000,000.
        out.append(
            {
                "name": f"fleet view: seq scans of a large table, {fleet['fleet']:,}",
                "value": float(sum(len(s["seq_scans_of_large_tables"]) for s in fleet["scenarios"])),
                "target": "0",
                "met": fleet["all_on_an_index"],
            }
        )
    return out


def write_json(results: dict[str, Any], path: Path) -> None:
    path.write_text(json.dumps(results, indent=2, sort_keys=False, default=str) + "\n")


def plot(results: dict[str, Any], path: Path) -> Path | None:
    lat = results.get("latency")
    if not lat:
        return None
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None

    names = list(OPS)
    fig, (ax, ax2) = plt.subplots(2, 1, figsize=(9.5, 9.2), dpi=100, gridspec_kw={"height_ratios": [1.25, 1]})
    height = 0.26
    colours = {"service": "#8fb8de", "handler": "#1f5f99"}
    ys = list(range(len(names)))
    for offset, level in ((-height / 2, "service"), (height / 2, "handler")):
        rest = [lat["operations"][n][level]["without_put_events"]["median_ms"] for n in names]
        put = [lat["operations"][n][level]["put_events"]["median_ms"] for n in names]
        p99 = [lat["operations"][n][level]["without_put_events"]["p99_ms"] for n in names]
        pos = [y + offset for y in ys]
        ax.barh(pos, rest, height=height, color=colours[level], label=f"{level} level, median (PutEvents excluded)")
        ax.barh(
            pos,
            put,
            left=rest,
            height=height,
            color="none",
            edgecolor=colours[level],
            hatch="///",
            linewidth=0.8,
            label="+ time inside PutEvents (moto, in process)" if level == "handler" else None,
        )
        ax.scatter(p99, pos, marker="|", s=160, color="black", zorder=3, label="p99 (PutEvents excluded)" if level == "handler" else None)
    for y, n in zip(ys, names):
        op = lat["operations"][n]
        floor = op["floor"]["floor"]["median_ms"]
        ax.plot(
            [floor, floor],
            [y - 0.42, y + 0.42],
            color="#c0392b",
            linewidth=2.2,
            label="floor: SELECT 1 + PING, median (same rounds)" if y == 0 else None,
        )
        if op["target_ratio"]:
            x = op["target_ratio"] * floor
            ax.plot(
                [x, x],
                [y - 0.42, y + 0.42],
                color="#27ae60",
                linestyle="--",
                linewidth=1.4,
                label="target (x floor)" if n == "heartbeat_steady" else None,
            )
    ax.set_yticks(ys)
    ax.set_yticklabels([LABELS[n] for n in names])
    ax.invert_yaxis()
    ax.set_xlabel("ms per call (warm, in process)")
    meta = results["meta"]
    ax.set_title(f"Registry operations vs the floor ({lat['iterations']} calls each; {meta['cpus']} CPUs, unix sockets)", fontsize=10)
    ax.legend(fontsize=7.5, loc="lower right", framealpha=0.9)
    ax.grid(axis="x", alpha=0.3)

    # Where the time goes (PutEvents excluded): service-level parts (means)
    # and the handler's extra (differences of medians).
    parts = (
        ("Postgres: parse + plan", "#7f3c8d"),
        ("Postgres: execute + commit + round trip", "#b07cc6"),
        ("Redis pipeline", "#e68310"),
        ("Python in service", "#3969ac"),
        ("request parsing", "#11a579"),
        ("Powertools", "#80ba5a"),
    )
    for y, n in zip(ys, names):
        op = lat["operations"][n]
        b = op["breakdown_mean_ms"]
        a = op.get("sql_anatomy") or {}
        plan = min(max(a.get("parse_and_plan", 0.0) - (lat.get("select_1_alone_ms") or 0.0), 0.0), b["postgres"])
        values = (
            plan,
            b["postgres"] - plan + b.get("marking", 0.0),
            b["redis"],
            max(b["python"], 0.0),
            max(op["parse_overhead_ms"], 0.0),
            max(op["powertools_overhead_ms"], 0.0),
        )
        left = 0.0
        for (label, colour), value in zip(parts, values):
            ax2.barh(y, value, left=left, height=0.55, color=colour, label=label if y == 0 else None)
            left += value
        floor = op["floor"]["floor"]["median_ms"]
        ax2.plot([floor, floor], [y - 0.36, y + 0.36], color="#c0392b", linewidth=2.2, label="floor" if y == 0 else None)
    ax2.set_yticks(ys)
    ax2.set_yticklabels([LABELS[n] for n in names])
    ax2.invert_yaxis()
    ax2.set_xlabel("ms per call, PutEvents excluded (service parts: means; parsing, Powertools: medians' differences)")
    ax2.set_title("Where the time goes (Postgres split by replaying its statement with EXPLAIN)", fontsize=10)
    ax2.legend(fontsize=7.5, loc="upper center", bbox_to_anchor=(0.5, -0.2), framealpha=0.9, ncol=4)
    ax2.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
