"""Events carry a per-workspace order (issue: register waits on the lock
while a deregister commits).

Every write that records an event of a workspace increments its revision in
the same statement, and the event carries it as ``sequence``; its time is
read after the row lock. So ordering one workspace's events by sequence
gives the order in which the changes committed, which is what the row says.
"""

import threading

from conftest import wait_for_lock_wait


def test_register_waiting_while_a_deregister_commits_is_ordered_by_sequence(registry, pg, servers, aws):
    import psycopg2

    ws, token = registry.registered()
    aws.received()
    holder = psycopg2.connect(servers.database_url)
    holder.autocommit = False
    with holder.cursor() as cur:  # what a racing registration holds
        cur.execute("SELECT pg_advisory_xact_lock(hashtextextended('workspace-registry/register/' || %s, 0))", (ws,))
    answers = []

    def register_again():
        from registry import db

        answers.append(registry.register(ws, token=token))
        db.close()

    waiting = threading.Thread(target=register_again)
    waiting.start()
    try:
        wait_for_lock_wait(pg)
        # The register's transaction began before this one: by start time it
        # is the older of the two, though it commits after.
        assert registry.deregister(ws, token).status == 200
    finally:
        holder.rollback()
        holder.close()
        waiting.join(30)
    assert [a.status for a in answers] == [200]

    with pg.cursor() as cur:
        cur.execute("SELECT status::text, revision FROM workspaces WHERE id = %s", (ws,))
        assert cur.fetchone() == ("online", 3)
        cur.execute("SELECT event_type, sequence, created_at FROM structure_events WHERE workspace_id = %s ORDER BY sequence", (ws,))
        rows = cur.fetchall()
    assert [(t, s) for t, s, _ in rows] == [("WORKSPACE_ONLINE", 1), ("WORKSPACE_OFFLINE", 2), ("WORKSPACE_ONLINE", 3)]
    times = [at for _, _, at in rows]
    assert times == sorted(times)  # time read after the lock agrees with the sequence
    published = sorted((e["detail"]["sequence"], e["detail-type"]) for e in aws.received())
    assert published == [(2, "WORKSPACE_OFFLINE"), (3, "WORKSPACE_ONLINE")]


def test_every_recorded_event_of_a_workspace_has_the_next_sequence(registry, pg, aws):
    ws, token = registry.registered()
    registry.heartbeat(ws, token, error_rate=0.9)  # degraded
    registry.heartbeat(ws, token, error_rate=0.3)  # stays degraded: no event, no revision
    registry.update_card(ws, {"v": 2}, token)
    registry.heartbeat(ws, token, error_rate=0.0)  # online again
    registry.deregister(ws, token)
    with pg.cursor() as cur:
        cur.execute("SELECT event_type, sequence FROM structure_events WHERE workspace_id = %s ORDER BY created_at", (ws,))
        assert cur.fetchall() == [
            ("WORKSPACE_ONLINE", 1),
            ("WORKSPACE_DEGRADED", 2),
            ("AGENT_CARD_UPDATED", 3),
            ("WORKSPACE_ONLINE", 4),
            ("WORKSPACE_OFFLINE", 5),
        ]
    details = [e["detail"] for e in aws.received()]
    assert [d["sequence"] for d in details if d["event_type"] != "TASK_UPDATED"] == [1, 2, 3, 4, 5]


def test_the_sweep_expiry_takes_the_next_sequence_too(registry, pg, aws):
    ws, token = registry.registered()
    with pg.cursor() as cur:
        cur.execute("UPDATE workspaces SET last_heartbeat_at = now() - interval '1 hour' WHERE id = %s", (ws,))
    registry.sweep()
    with pg.cursor() as cur:
        cur.execute("SELECT event_type, sequence FROM structure_events WHERE workspace_id = %s ORDER BY sequence", (ws,))
        assert cur.fetchall() == [("WORKSPACE_ONLINE", 1), ("WORKSPACE_OFFLINE", 2)]
    offline = [e for e in aws.received() if e["detail-type"] == "WORKSPACE_OFFLINE"]
    assert [e["detail"]["sequence"] for e in offline] == [2]


def test_racing_writers_never_share_a_sequence(registry, pg):
    ws, token = registry.registered()

    def worker(n):
        from registry import db

        for i in range(10):
            registry.update_card(ws, {"writer": n, "i": i}, token)
        db.close()

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    with pg.cursor() as cur:
        cur.execute("SELECT sequence FROM structure_events WHERE workspace_id = %s ORDER BY created_at", (ws,))
        sequences = [r[0] for r in cur.fetchall()]
        cur.execute("SELECT revision, agent_card FROM workspaces WHERE id = %s", (ws,))
        revision, card = cur.fetchone()
    assert sequences == list(range(1, 42)) and revision == 41
    # the row holds what the highest sequence announced
    cur = pg.cursor()
    cur.execute("SELECT payload->'agent_card' FROM structure_events WHERE workspace_id = %s AND sequence = 41", (ws,))
    assert cur.fetchone()[0] == card
