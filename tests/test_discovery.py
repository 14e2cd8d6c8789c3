"""Peer discovery (issue #13): GET /registry/discover/{id}, GET
/registry/{id}/peers and POST /registry/check-access, through their
functions and sample events, on real Postgres and Redis.

The tree below is written the way the platform writes it (rows and tokens
in Postgres, the liveness and URL keys in Redis), with every shape the
access rule and the URL choice must handle:

    pm ─┬─ dev-lead ─┬─ backend ── auditor        other-root ── other-child (legacy: no token)
        │            └─ frontend
        ├─ designer ── qa                         loop-a <-> loop-b (a parent_id cycle)
        ├─ old-sibling (removed)
        ├─ moved (forwarded_to backend)
        └─ partner (runtime 'external', a localhost URL)
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import pytest

from conftest import fake_dns, new_id

from devstack import harness

# (name, parent, role, extra columns)
TREE = [
    ("pm", None, "Project Manager", {}),
    ("dev-lead", "pm", "Dev Lead", {}),
    ("backend", "dev-lead", "Backend Engineer", {}),
    ("frontend", "dev-lead", "Frontend Engineer", {}),
    ("auditor", "backend", "Security Auditor", {}),
    ("designer", "pm", "", {}),
    ("qa", "designer", "QA", {}),
    ("old-sibling", "pm", "Archivist", {"status": "removed"}),
    ("moved", "pm", "Mover", {}),
    ("partner", "pm", "Partner Agent", {"runtime": "external", "url": "http://localhost:9100/a2a"}),
    ("other-root", None, "Ops", {}),
    ("other-child", "other-root", "Ops Helper", {}),
    ("loop-a", None, "Loop A", {}),
    ("loop-b", "loop-a", "Loop B", {}),
]
LEGACY = {"other-child"}  # no token: grandfathered, as the seed allows


@dataclass
class Tree:
    ids: dict[str, str] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)
    parents: dict[str, str | None] = field(default_factory=dict)
    urls: dict[str, str] = field(default_factory=dict)

    def __getitem__(self, name: str) -> str:
        return self.ids[name]

    def name_of(self, ws: str) -> str:
        return next(n for n, i in self.ids.items() if i == ws)


def insert_workspace(pg, ws, name, *, parent=None, role=None, status="online", url=None, runtime=None, card=None):
    with pg.cursor() as cur:
        cur.execute(
            "INSERT INTO workspaces (id, name, role, status, url, parent_id, agent_card, runtime, last_heartbeat_at) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, COALESCE(%s, 'langgraph'), now())",
            (ws, name, role, status, url, parent, json.dumps(card) if card is not None else None, runtime),
        )


def give_token(pg, ws) -> str:
    from registry import tokens

    minted = tokens.mint()
    with pg.cursor() as cur:
        cur.execute("INSERT INTO workspace_auth_tokens (workspace_id, token_hash, prefix) VALUES (%s, %s, %s)", (ws, minted.sha256, minted.prefix))
    return minted.plaintext


@pytest.fixture
def tree(registry, pg) -> Tree:
    from registry import liveness

    t = Tree()
    for name, parent, role, extra in TREE:
        ws = new_id()
        t.ids[name] = ws
        t.parents[ws] = t.ids[parent] if parent else None
        url = extra.get("url", f"http://{name}.agents.test:8000")
        t.urls[name] = url
        insert_workspace(
            pg,
            ws,
            name,
            parent=t.ids[parent] if parent else None,
            role=role,
            status=extra.get("status", "online"),
            url=url,
            runtime=extra.get("runtime"),
            card={"name": f"{name} card", "skills": [{"id": name}]},
        )
        if name not in LEGACY:
            t.tokens[name] = give_token(pg, ws)
        if extra.get("status") != "removed":
            # What register leaves in Redis: liveness, URL caches.
            liveness.mark_registered(ws, url=url, internal_url=url)
    with pg.cursor() as cur:
        # Close the cycle: loop-a's parent is loop-b, whose parent is loop-a.
        cur.execute("UPDATE workspaces SET parent_id = %s WHERE id = %s", (t["loop-b"], t["loop-a"]))
        cur.execute("UPDATE workspaces SET forwarded_to = %s WHERE id = %s", (t["backend"], t["moved"]))
    t.parents[t["loop-a"]] = t["loop-b"]
    return t


def reference_rule(parents: dict[str, str | None], a: str, b: str) -> bool:
    """The seed's CanCommunicate, written plainly in Python: the test's
    independent statement of what the SQL function must decide."""
    if a == b:
        return True
    if a not in parents or b not in parents:
        return False
    if parents[a] == parents[b]:
        return True

    def ancestors(x):
        out, current = [], parents[x]
        while current is not None and len(out) < 32:
            out.append(current)
            current = parents.get(current)
        return out

    return a in ancestors(b) or b in ancestors(a)


# ------------------------------------------------------------------ the access rule


@pytest.mark.parametrize(
    "caller, target, allowed",
    [
        ("backend", "backend", True),  # self
        ("backend", "frontend", True),  # siblings
        ("pm", "other-root", True),  # both root-level
        ("dev-lead", "pm", True),  # child -> parent
        ("pm", "dev-lead", True),  # parent -> child
        ("pm", "auditor", True),  # ancestor -> great-grandchild
        ("auditor", "pm", True),  # the audit-routing contract: descendant -> ancestor
        ("auditor", "dev-lead", True),
        ("frontend", "auditor", False),  # uncle -> nephew: no horizontal chatter
        ("qa", "backend", False),  # cousins
        ("designer", "dev-lead", True),  # siblings under pm
        ("qa", "dev-lead", False),  # nephew -> uncle
        ("backend", "other-root", False),  # across trees
        ("other-child", "pm", False),
        ("loop-a", "loop-b", True),  # inside the cycle: each is the other's parent
        ("loop-a", "pm", False),  # out of the cycle: the walk ends
        ("pm", "loop-b", False),
    ],
)
def test_access_rule_through_check_access(registry, tree, caller, target, allowed):
    token = tree.tokens.get(caller)
    answer = registry.check_access(tree[caller], tree[target], token)
    assert (answer.status, answer.body) == (200, {"allowed": allowed})


def test_access_rule_matches_the_seeds_on_every_pair(registry, tree, pg):
    """All pairs of the tree (and an unknown id), asked of the SQL function
    and of check-access, against the rule written plainly in Python."""
    unknown = new_id()
    everyone = [*tree.ids.values(), unknown]
    wrong = []
    with pg.cursor() as cur:
        for a in everyone:
            for b in everyone:
                cur.execute("SELECT registry_can_communicate_v1(%s, %s)", (a, b))
                if cur.fetchone()[0] != reference_rule(tree.parents, a, b):
                    wrong.append((a, b))
    assert wrong == []
    for caller, token in tree.tokens.items():
        if caller == "old-sibling":
            continue  # a removed caller is answered 410 (test_check_access_refusals_and_bad_bodies)
        for target in everyone:
            expected = reference_rule(tree.parents, tree[caller], target)
            assert registry.check_access(tree[caller], target, token).body == {"allowed": expected}, (caller, target)


def test_the_walk_goes_32_levels_up_and_no_further(registry, pg):
    """A chain of 40: an ancestor 32 levels up is found, one 33 levels up is
    not (the seed's maxAncestorWalk), both ways."""
    chain = [new_id() for _ in range(41)]
    for depth, ws in enumerate(chain):
        insert_workspace(pg, ws, f"level-{depth}", parent=chain[depth - 1] if depth else None)
    bottom = chain[40]
    with pg.cursor() as cur:
        for target, expected in ((chain[8], True), (chain[7], False), (chain[39], True)):
            cur.execute("SELECT registry_can_communicate_v1(%s, %s), registry_can_communicate_v1(%s, %s)", (bottom, target, target, bottom))
            assert cur.fetchone() == (expected, expected), target
    token = give_token(pg, bottom)
    assert registry.check_access(bottom, chain[8], token).body == {"allowed": True}
    assert registry.check_access(bottom, chain[7], token).body == {"allowed": False}


def test_a_self_parent_and_a_long_cycle_end(registry, pg):
    """parent_id pointing at itself, and a cycle of five: the walk stops."""
    me = new_id()
    insert_workspace(pg, me, "self-parent")
    ring = [new_id() for _ in range(5)]
    for i, ws in enumerate(ring):
        insert_workspace(pg, ws, f"ring-{i}")
    outsider = new_id()
    insert_workspace(pg, outsider, "outsider", parent=ring[0])
    with pg.cursor() as cur:
        cur.execute("UPDATE workspaces SET parent_id = id WHERE id = %s", (me,))
        for i, ws in enumerate(ring):
            cur.execute("UPDATE workspaces SET parent_id = %s WHERE id = %s", (ring[(i + 1) % 5], ws))
        cur.execute("SET statement_timeout = '2s'")
        cur.execute("SELECT registry_can_communicate_v1(%s, %s)", (me, ring[0]))
        assert cur.fetchone() == (False,)
        # ring[1]'s chain: ring[2], ring[3], ring[4], ring[0], ring[1], ...: ring[0] is above it
        cur.execute("SELECT registry_can_communicate_v1(%s, %s)", (ring[1], ring[4]))
        assert cur.fetchone() == (True,)
        cur.execute("SELECT registry_can_communicate_v1(%s, %s)", (outsider, me))
        assert cur.fetchone() == (False,)
        cur.execute("RESET statement_timeout")


# ------------------------------------------------------------------ discover


def test_discover_answers_the_seeds_three_keys(registry, tree):
    answer = registry.discover(tree["backend"], tree["frontend"], tree.tokens["backend"])
    assert answer.status == 200
    # Exactly the seed's workspace-caller answer; the URL is the cached internal one.
    assert answer.body == {"id": tree["frontend"], "url": tree.urls["frontend"], "name": "frontend"}
    assert answer.headers["content-type"] == "application/json"


def test_discover_refusals_in_order(registry, tree):
    tok = tree.tokens
    # 400 before anything else, even with a good token.
    assert registry.discover(None, tree["pm"], tok["backend"]).body == {"error": "X-Workspace-ID header is required"}
    assert registry.discover("", tree["pm"], tok["backend"]).body == {"error": "X-Workspace-ID header is required"}
    bad = registry.discover("backend", tree["pm"], tok["backend"])
    assert bad.status == 400 and bad.body["error"].startswith("X-Workspace-ID header must be a UUID")
    bad = registry.discover(tree["backend"], "pm", tok["backend"])
    assert bad.status == 400 and bad.body["error"].startswith("workspace id in the path must be a UUID")
    # 401: the caller's gate, whatever the target.
    anonymous = registry.discover(tree["backend"], new_id())
    assert (anonymous.status, anonymous.body) == (401, {"error": "missing workspace auth token"})
    assert registry.discover(tree["backend"], tree["frontend"], tok["frontend"]).body == {"error": "invalid workspace auth token"}
    # 404 for an unknown target (the seed: 403), before the access rule.
    unknown = registry.discover(tree["backend"], new_id(), tok["backend"])
    assert (unknown.status, unknown.body) == (404, {"error": "workspace not found"})
    # 403 from the access rule.
    forbidden = registry.discover(tree["frontend"], tree["auditor"], tok["frontend"])
    assert (forbidden.status, forbidden.body) == (403, {"error": "not authorized to discover this workspace"})
    # An unknown caller holds no token: the gate lets it through (grandfathered), the rule does not.
    assert registry.discover(new_id(), tree["pm"]).status == 403


def test_a_removed_caller_gets_410_and_a_removed_target_503(registry, tree, pg):
    with pg.cursor() as cur:
        cur.execute("UPDATE workspaces SET status = 'removed' WHERE id = %s", (tree["qa"],))
    assert registry.discover(tree["qa"], tree["designer"], tree.tokens["qa"]).status == 410
    # The removed sibling: allowed by the rule, never handed out.
    gone = registry.discover(tree["designer"], tree["old-sibling"], tree.tokens["designer"])
    assert (gone.status, gone.body) == (503, {"error": "workspace not available", "status": "removed"})
    # Even with a cached internal URL left behind.
    from registry import liveness

    liveness.mark_registered(tree["old-sibling"], url="http://x.test:1", internal_url="http://x.test:1")
    assert registry.discover(tree["designer"], tree["old-sibling"], tree.tokens["designer"]).status == 503


def test_no_cached_url_online_target_gets_the_internal_url_template(registry, tree, rds, env):
    target = tree["frontend"]
    rds.delete(f"ws:{target}:internal_url")
    answer = registry.discover(tree["backend"], target, tree.tokens["backend"])
    assert answer.body == {"id": target, "url": f"http://ws-{target[:12]}:8000", "name": "frontend"}
    # Cached as the seed did (CacheInternalURL), 5 minutes.
    assert rds.get(f"ws:{target}:internal_url") == f"http://ws-{target[:12]}:8000"
    assert 290 < rds.ttl(f"ws:{target}:internal_url") <= 300

    rds.delete(f"ws:{target}:internal_url")
    env(INTERNAL_URL_TEMPLATE="https://{id}.agents.example:443/a2a", DISCOVER_CACHE_SECONDS=0)
    assert registry.discover(tree["backend"], target, tree.tokens["backend"]).body["url"] == f"https://{target}.agents.example:443/a2a"
    rds.delete(f"ws:{target}:internal_url")
    env(INTERNAL_URL_TEMPLATE="")  # empty: the URL it registered
    assert registry.discover(tree["backend"], target, tree.tokens["backend"]).body["url"] == tree.urls["frontend"]


def test_a_template_with_an_unknown_placeholder_falls_back_to_the_default(env, caplog):
    from registry.settings import DEFAULT_INTERNAL_URL_TEMPLATE, get_settings

    env(INTERNAL_URL_TEMPLATE="http://{name}:8000")
    assert get_settings().internal_url_template == DEFAULT_INTERNAL_URL_TEMPLATE
    assert "INTERNAL_URL_TEMPLATE" in caplog.text


@pytest.mark.parametrize("status", ["offline", "paused", "hibernated", "failed", "provisioning"])
def test_an_unreachable_target_without_a_cached_url_is_503_with_its_status(registry, tree, rds, pg, status):
    target = tree["frontend"]
    rds.delete(f"ws:{target}:internal_url")
    with pg.cursor() as cur:
        cur.execute("UPDATE workspaces SET status = %s WHERE id = %s", (status, target))
    answer = registry.discover(tree["backend"], target, tree.tokens["backend"])
    assert (answer.status, answer.body) == (503, {"error": "workspace not available", "status": status})


def test_degraded_target_gets_a_url(registry, tree, rds, pg):
    target = tree["frontend"]
    rds.delete(f"ws:{target}:internal_url")
    with pg.cursor() as cur:
        cur.execute("UPDATE workspaces SET status = 'degraded' WHERE id = %s", (target,))
    assert registry.discover(tree["backend"], target, tree.tokens["backend"]).status == 200


def test_forwarded_to_is_followed_for_the_id_and_url(registry, tree):
    answer = registry.discover(tree["dev-lead"], tree["moved"], tree.tokens["dev-lead"])
    assert answer.body == {"id": tree["backend"], "url": tree.urls["backend"], "name": "backend"}


def test_forwarding_stops_after_five_hops_and_survives_a_cycle(registry, tree, pg, rds):
    hops = [new_id() for _ in range(8)]
    for i, ws in enumerate(hops):
        insert_workspace(pg, ws, f"hop-{i}", url=f"http://hop-{i}.agents.test:8000")
    with pg.cursor() as cur:
        for a, b in zip(hops, hops[1:]):
            cur.execute("UPDATE workspaces SET forwarded_to = %s WHERE id = %s", (b, a))
    token = tree.tokens["pm"]  # root-level, like the hops: siblings
    answer = registry.discover(tree["pm"], hops[0], token)
    # No cached URL for the hops: the template, for the fifth hop.
    assert answer.body == {"id": hops[5], "url": f"http://ws-{hops[5][:12]}:8000", "name": "hop-5"}
    # The fifth hop's cached URL is used when there is one (read from Redis by its own id).
    rds.set(f"ws:{hops[5]}:internal_url", "http://hop-5.agents.test:8000")
    assert registry.discover(tree["pm"], hops[0], token).body["url"] == "http://hop-5.agents.test:8000"
    with pg.cursor() as cur:
        cur.execute("UPDATE workspaces SET forwarded_to = %s WHERE id = %s", (hops[0], hops[1]))  # 0 -> 1 -> 0
    answer = registry.discover(tree["pm"], hops[0], token)
    assert answer.status == 200 and answer.body["id"] == hops[1]  # five hops: 1, 0, 1, 0, 1


# ------------------------------------------------------------------ external targets and URL safety


def test_an_external_targets_url_for_docker_and_external_callers(registry, tree, pg, env):
    # The caller's runtime is not part of what a kept answer is bound to
    # (a change is seen within DISCOVER_CACHE_SECONDS): off here.
    env(DISCOVER_CACHE_SECONDS=0)
    # designer is a sibling of partner and runs in Docker (langgraph): localhost is the Docker host.
    answer = registry.discover(tree["designer"], tree["partner"], tree.tokens["designer"])
    assert answer.body == {"id": tree["partner"], "url": "http://host.docker.internal:9100/a2a", "name": "partner"}
    with pg.cursor() as cur:
        cur.execute("UPDATE workspaces SET runtime = 'external' WHERE id = %s", (tree["designer"],))
    # An external caller dials it as registered.
    assert registry.discover(tree["designer"], tree["partner"], tree.tokens["designer"]).body["url"] == "http://localhost:9100/a2a"


@pytest.mark.parametrize(
    "registered, for_docker",
    [
        ("http://127.0.0.1:9100/a2a", "http://host.docker.internal:9100/a2a"),
        ("http://LocalHost:9100", "http://host.docker.internal:9100"),
        ("https://localhost/a2a?next=http://localhost/x", "https://host.docker.internal/a2a?next=http://localhost/x"),
        # Only the host: the seed's string replace mangled these.
        ("http://agent.example.com:9100/localhost", "http://agent.example.com:9100/localhost"),
    ],
)
def test_only_the_host_is_rewritten(registered, for_docker):
    from registry.discovery import for_docker_callers

    assert for_docker_callers(registered) == for_docker


def test_an_external_loopback_url_is_refused_for_an_external_caller(registry, tree, pg, caplog, env):
    env(DISCOVER_CACHE_SECONDS=0)
    with pg.cursor() as cur:
        cur.execute("UPDATE workspaces SET url = 'http://127.0.0.1:9100' WHERE id = %s", (tree["partner"],))
    assert registry.discover(tree["designer"], tree["partner"], tree.tokens["designer"]).body["url"] == "http://host.docker.internal:9100"
    with pg.cursor() as cur:
        cur.execute("UPDATE workspaces SET runtime = 'external' WHERE id = %s", (tree["designer"],))
    answer = registry.discover(tree["designer"], tree["partner"], tree.tokens["designer"])
    assert (answer.status, answer.body) == (503, {"error": "workspace URL failed safety check"})
    [record] = [r for r in caplog.records if "refusing to hand out an unsafe URL" in r.getMessage()]
    assert record.workspace_id == tree["partner"] and "loopback" in record.reason


@pytest.mark.parametrize(
    "url", ["http://169.254.169.254/latest/meta-data/", "http://[::ffff:169.254.169.254]/", "http://0x7f.1:80/", "http://10.0.0.5:8000"]
)
def test_an_external_target_at_a_blocked_address_is_never_handed_out(registry, tree, pg, url):
    with pg.cursor() as cur:
        cur.execute("UPDATE workspaces SET url = %s WHERE id = %s", (url, tree["partner"]))
    answer = registry.discover(tree["designer"], tree["partner"], tree.tokens["designer"])
    assert (answer.status, answer.body) == (503, {"error": "workspace URL failed safety check"})


def test_dns_rebinding_after_registration_is_refused(registry, tree, pg):
    """The host resolved to a public address when it registered, and to the
    metadata endpoint when it is discovered: refused, on the Postgres path
    and on the Redis fast path alike."""
    from registry import service

    ws = new_id()
    host = "partner-two.example.com"
    registered = registry.register(ws, url=f"https://{host}/a2a", dns={host: ["93.184.216.34"]})
    assert registered.status == 200
    with pg.cursor() as cur:
        cur.execute("UPDATE workspaces SET runtime = 'external', parent_id = %s WHERE id = %s", (tree["pm"], ws))
    caller, token = tree["designer"], tree.tokens["designer"]
    first = registry.discover(caller, ws, token)
    assert first.body == {"id": ws, "url": f"https://{host}/a2a", "name": ws}
    service.resolver = fake_dns({host: ["93.184.216.34"]})
    assert registry.discover(caller, ws, token).status == 200  # the fast path, DNS checked again

    service.resolver = fake_dns({host: ["169.254.169.254"]})
    answer = registry.discover(caller, ws, token)
    assert (answer.status, answer.body) == (503, {"error": "workspace URL failed safety check"})
    service.resolver = fake_dns({host: ["93.184.216.34", "10.0.0.7"]})  # one private address among public ones
    assert registry.discover(caller, ws, token).status == 503
    service.resolver = fake_dns({})  # no longer resolves at all
    assert registry.discover(caller, ws, token).status == 503


def test_workspace_to_workspace_urls_are_not_resolved_but_literals_are_checked(registry, tree, rds, env):
    """A name on the internal path resolves in the callers' network (Docker's),
    not here: it is handed out unresolved (the fake DNS knows none of them).
    A literal blocked address is refused on every path."""
    caller, target, token = tree["backend"], tree["frontend"], tree.tokens["backend"]
    assert registry.discover(caller, target, token).body["url"] == "http://frontend.agents.test:8000"
    env(DISCOVER_CACHE_SECONDS=0)
    rds.set(f"ws:{target}:internal_url", "http://169.254.169.254/latest/meta-data/")
    assert registry.discover(caller, target, token).body == {"error": "workspace URL failed safety check"}
    rds.delete(f"ws:{target}:internal_url")
    env(INTERNAL_URL_TEMPLATE="http://127.0.0.1:8000/{id}", DISCOVER_CACHE_SECONDS=0)
    assert registry.discover(caller, target, token).status == 503
    assert rds.get(f"ws:{target}:internal_url") is None  # a refused URL is not cached


# ------------------------------------------------------------------ the caller's token gate


def test_a_legacy_caller_is_grandfathered_unless_tokens_are_required(registry, tree, env):
    caller = tree["other-child"]  # no token on file
    assert registry.discover(caller, tree["other-root"]).status == 200
    env(REQUIRE_WORKSPACE_TOKENS="true")
    assert registry.discover(caller, tree["other-root"]).body == {"error": "missing workspace auth token"}
    assert registry.peers(caller).status == 401
    assert registry.check_access(caller, tree["other-root"]).status == 401


def test_first_use_of_a_token_on_discover_confirms_it(registry, pg):
    a, token = registry.registered()
    b, _ = registry.registered()
    with pg.cursor() as cur:
        cur.execute("SELECT confirmed_at IS NULL FROM workspace_auth_tokens WHERE workspace_id = %s", (a,))
        assert cur.fetchone() == (True,)
    assert registry.discover(a, b, token).status == 200
    with pg.cursor() as cur:
        cur.execute("SELECT confirmed_at IS NOT NULL FROM workspace_auth_tokens WHERE workspace_id = %s", (a,))
        assert cur.fetchone() == (True,)


def test_odd_authorization_and_id_headers(registry, tree):
    caller, target = tree["backend"], tree["frontend"]
    for value in ("Bearer", "Basic dXNlcjpwYXNz", "Bearer " + "A" * 42, "bearer  x"):
        answer = registry.discover(caller, target, headers={"Authorization": value})
        assert (answer.status, answer.body) == (401, {"error": "invalid workspace auth token"}), value
    # Upper case and surrounding blanks: the same workspace.
    assert registry.discover(f"  {caller.upper()} ", target, tree.tokens["backend"]).status == 200
    for value in ("\x00", "a" * 5000, "5b0b8c1e-3c4f-4a8e-9d2a-7f1e6c2b9a1", "{" + caller + "}", "💥"):
        answer = registry.discover(value, target, tree.tokens["backend"])
        assert answer.status == 400 and "X-Workspace-ID" in answer.body["error"], value


def test_a_repeated_id_header_with_different_values_is_refused(registry, tree):
    from conftest import invoke

    event = harness.api_event(
        "/registry/discover/{id}", params={"id": tree["frontend"]}, headers={"X-Workspace-ID": tree["backend"]}, token=tree.tokens["backend"]
    )
    event["multiValueHeaders"]["X-Workspace-ID"] = [tree["backend"], tree["pm"]]
    answer = invoke(event)
    assert (answer.status, answer.body) == (400, {"error": "X-Workspace-ID header is repeated with different values"})


@pytest.mark.parametrize("path_id", ["..", "%2e%2e", "not-a-uuid", "0" * 36, "a" * 300, "%00", "5B0B8C1E-3C4F-4A8E-9D2A-7F1E6C2B9A1Z"])
def test_odd_path_ids_are_400_never_500(registry, tree, path_id):
    token = tree.tokens["backend"]
    for answer in (registry.discover(tree["backend"], path_id, token), registry.peers(path_id, token)):
        assert (answer.status, answer.body["error"]) == (400, "workspace id in the path must be a UUID such as 3f2504e0-4f89-41d3-9a0c-0305e82c3301"), path_id


# ------------------------------------------------------------------ ETag and Cache-Control


def test_etag_and_if_none_match_on_discover(registry, tree, env):
    caller, target, token = tree["backend"], tree["frontend"], tree.tokens["backend"]
    first = registry.discover(caller, target, token)
    etag = first.headers["etag"]
    assert etag.startswith('"') and etag.endswith('"') and len(etag) == 34
    assert first.headers["cache-control"] == "private, max-age=0"
    assert first.headers["vary"] == "Authorization, X-Workspace-ID"
    for sent in (etag, f"W/{etag}", f'"something-else", {etag}', "*"):
        again = registry.discover(caller, target, token, headers={"If-None-Match": sent})
        assert (again.status, again.raw, again.headers["etag"]) == (304, "", etag), sent
    other = registry.discover(caller, target, token, headers={"If-None-Match": '"stale"'})
    assert (other.status, other.headers["etag"]) == (200, etag)
    # The ETag is the answer's: the Postgres path and the Redis path agree.
    env(DISCOVER_CACHE_SECONDS=0)
    assert registry.discover(caller, target, token).headers["etag"] == etag
    # A refusal is never a 304, whatever If-None-Match says.
    assert registry.discover(caller, target, headers={"If-None-Match": "*"}).status == 401
    env(DISCOVERY_MAX_AGE_SECONDS=20)
    assert registry.discover(caller, target, token).headers["cache-control"] == "private, max-age=20"


def test_etag_changes_with_the_answer(registry, tree, rds, env):
    env(DISCOVER_CACHE_SECONDS=0)
    caller, target, token = tree["backend"], tree["frontend"], tree.tokens["backend"]
    before = registry.discover(caller, target, token).headers["etag"]
    rds.set(f"ws:{target}:internal_url", "http://frontend-2.agents.test:8000")
    changed = registry.discover(caller, target, token, headers={"If-None-Match": before})
    assert changed.status == 200 and changed.headers["etag"] != before


# ------------------------------------------------------------------ the Redis fast path


def test_a_hit_answers_from_redis_without_postgres(registry, tree, rds, dead_postgres):
    caller, target, token = tree["backend"], tree["frontend"], tree.tokens["backend"]
    first = registry.discover(caller, target, token)
    key = f"registry:discover:{caller}:{target}"
    entry = json.loads(rds.get(key))
    assert 25 < rds.ttl(key) <= 30
    # Bound to the sha256 of the token, never the token itself.
    import hashlib

    assert entry["token"] == hashlib.sha256(token.encode()).hexdigest() and token not in rds.get(key)
    # With Postgres gone, the kept answer is still given (within its TTL)...
    dead_postgres("postgresql://postgres@127.0.0.1:1/postgres")
    hit = registry.discover(caller, target, token)
    assert (hit.status, hit.raw, hit.headers["etag"]) == (200, first.raw, first.headers["etag"])
    # ...but only to the token it was given on: anything else needs Postgres, and fails closed.
    other = registry.discover(caller, target, tree.tokens["frontend"])
    assert other.status == 503 and other.headers["retry-after"] == "5"
    assert registry.discover(caller, target).status == 503


def test_the_fast_path_lets_go_when_the_target_changes(registry, tree, rds, pg):
    caller, target, token = tree["backend"], tree["frontend"], tree.tokens["backend"]
    registry.discover(caller, target, token)
    # A change Redis cannot see (a rename in Postgres) waits for the entry's TTL...
    with pg.cursor() as cur:
        cur.execute("UPDATE workspaces SET name = 'frontend-renamed' WHERE id = %s", (target,))
    assert registry.discover(caller, target, token).body["name"] == "frontend"
    # ...a new internal URL (a registration writes it) is seen at once...
    rds.set(f"ws:{target}:internal_url", "http://frontend-2.agents.test:8000")
    assert registry.discover(caller, target, token).body == {"id": target, "url": "http://frontend-2.agents.test:8000", "name": "frontend-renamed"}
    # ...and so is a target whose liveness key is gone (deregistered, swept, removed by the platform).
    rds.delete(f"ws:{target}")
    with pg.cursor() as cur:
        cur.execute("UPDATE workspaces SET status = 'offline' WHERE id = %s", (target,))
    rds.delete(f"ws:{target}:internal_url")
    assert registry.discover(caller, target, token).status == 503


def test_a_target_whose_liveness_key_expired_is_not_answered_from_the_cache(registry, tree, rds, pg):
    """The liveness key (180 s) outlives no silent agent; its cached
    internal URL (5 minutes) may: the kept answer goes with the key."""
    caller, target, token = tree["backend"], tree["frontend"], tree.tokens["backend"]
    registry.discover(caller, target, token)
    with pg.cursor() as cur:
        cur.execute("UPDATE workspaces SET name = 'frontend-renamed' WHERE id = %s", (target,))
    rds.delete(f"ws:{target}")
    assert registry.discover(caller, target, token).body["name"] == "frontend-renamed"  # from Postgres


def test_a_deregistered_target_is_not_discovered_from_the_cache(registry):
    a, ta = registry.registered()
    b, tb = registry.registered()
    assert registry.discover(a, b, ta).status == 200
    assert registry.deregister(b, tb).status == 200
    answer = registry.discover(a, b, ta)
    assert (answer.status, answer.body) == (503, {"error": "workspace not available", "status": "offline"})


def test_what_is_not_kept(registry, tree, rds, env):
    # A grandfathered caller (no token on file: whatever it presents is not
    # checked, so nothing can be bound to it), a forwarded target, and a
    # target that is not live.
    assert registry.discover(tree["other-child"], tree["other-root"]).status == 200
    assert registry.discover(tree["other-child"], tree["other-root"], "A" * 43).status == 200
    assert registry.discover(tree["dev-lead"], tree["moved"], tree.tokens["dev-lead"]).status == 200
    rds.delete(f"ws:{tree['designer']}")
    assert registry.discover(tree["pm"], tree["designer"], tree.tokens["pm"]).status == 200
    # Refusals are never kept.
    assert registry.discover(tree["frontend"], tree["auditor"], tree.tokens["frontend"]).status == 403
    assert rds.keys("registry:discover:*") == []
    env(DISCOVER_CACHE_SECONDS=0)
    assert registry.discover(tree["backend"], tree["frontend"], tree.tokens["backend"]).status == 200
    assert rds.keys("registry:discover:*") == []


def test_a_foreign_or_corrupt_entry_is_ignored(registry, tree, rds):
    caller, target, token = tree["backend"], tree["frontend"], tree.tokens["backend"]
    key = f"registry:discover:{caller}:{target}"
    for junk in ("not json", "[]", json.dumps({"token": "x"}), json.dumps({"body": 1, "token": None, "basis": None, "dns": False})):
        rds.set(key, junk)
        answer = registry.discover(caller, target, token)
        assert answer.status == 200 and answer.body["id"] == target, junk


def test_redis_down_discovery_still_answers_from_postgres(registry, tree, env):
    from registry import liveness

    env(REDIS_URL="unix:///nonexistent/redis.sock", REDIS_COOLDOWN_SECONDS=0)
    liveness.reset()
    answer = registry.discover(tree["backend"], tree["frontend"], tree.tokens["backend"])
    # No cached internal URL can be read: the template, as for an expired cache.
    target = tree["frontend"]
    assert answer.body == {"id": target, "url": f"http://ws-{target[:12]}:8000", "name": "frontend"}
    liveness.reset()


# ------------------------------------------------------------------ Postgres down


@pytest.fixture
def dead_postgres(monkeypatch):
    from registry import db

    def use(dsn):
        monkeypatch.setattr(db, "_dsn_provider", lambda: dsn)
        db.close()

    yield use
    db.close()


def test_postgres_down_is_503_with_retry_after_on_every_read(registry, tree, dead_postgres):
    dead_postgres("postgresql://postgres@127.0.0.1:1/postgres")
    answers = [
        registry.discover(tree["backend"], tree["frontend"], tree.tokens["backend"]),
        registry.discover(tree["other-child"], tree["other-root"]),  # grandfathered: still needs Postgres
        registry.peers(tree["backend"], tree.tokens["backend"]),
        registry.check_access(tree["backend"], tree["frontend"], tree.tokens["backend"]),
    ]
    for a in answers:
        assert (a.status, a.body, a.headers["retry-after"]) == (503, {"error": "database unavailable, retry later"}, "5")


# ------------------------------------------------------------------ peers


PEER_KEYS = ["id", "name", "role", "tier", "status", "url", "parent_id", "active_tasks", "agent_card"]


def test_peers_are_siblings_then_children_then_parent(registry, tree):
    answer = registry.peers(tree["dev-lead"], tree.tokens["dev-lead"])
    assert answer.status == 200
    names = [p["name"] for p in answer.body]
    # siblings by name (not the removed one, not itself), children, parent
    assert names == ["designer", "moved", "partner", "backend", "frontend", "pm"]
    first = answer.body[0]
    assert list(first) == PEER_KEYS
    assert first == {
        "id": tree["designer"],
        "name": "designer",
        "role": None,  # empty role: null, as the seed
        "tier": 1,
        "status": "online",
        "url": tree.urls["designer"],
        "parent_id": tree["pm"],
        "active_tasks": 0,
        "agent_card": {"name": "designer card", "skills": [{"id": "designer"}]},
    }
    assert answer.body[-1]["parent_id"] is None


def test_root_level_peers_are_the_other_roots(registry, tree):
    names = [p["name"] for p in registry.peers(tree["pm"], tree.tokens["pm"]).body]
    # The other root (loop-a has a parent: the cycle), then the children
    # (not the removed one); a root has no parent.
    assert names == ["other-root", "designer", "dev-lead", "moved", "partner"]


def test_peers_never_null_and_never_itself(registry, pg):
    lonely, token = registry.registered()
    with pg.cursor() as cur:
        cur.execute("UPDATE workspaces SET parent_id = id WHERE id = %s", (lonely,))  # its own parent
    answer = registry.peers(lonely, token)
    assert (answer.status, answer.raw) == (200, "[]")


def test_a_cycle_lists_each_peer_once(registry, tree):
    answer = registry.peers(tree["loop-a"], tree.tokens["loop-a"])
    assert [p["name"] for p in answer.body] == ["loop-b"]


def test_peers_filter_by_q_on_name_or_role(registry, tree):
    token = tree.tokens["dev-lead"]
    assert [p["name"] for p in registry.peers(tree["dev-lead"], token, q="  ENGINEER ").body] == ["backend", "frontend"]
    assert [p["name"] for p in registry.peers(tree["dev-lead"], token, q="part").body] == ["partner"]
    assert registry.peers(tree["dev-lead"], token, q="nobody").raw == "[]"
    assert len(registry.peers(tree["dev-lead"], token, q="   ").body) == 6  # blank: no filter
    assert registry.peers(tree["dev-lead"], token, q="\x00💥" * 100).raw == "[]"


def test_undeclared_query_parameters_are_ignored(registry, tree):
    """As the seed's Gin ignored them (a cache-buster, a newer client's
    option): the answer is the same."""
    from conftest import get

    token = tree.tokens["dev-lead"]
    plain = registry.peers(tree["dev-lead"], token)
    for query in ({"_": "1700000000"}, {"limit": "-1", "q": ""}, {"\x00": "\x00", "": ""}, {"q[]": "x"}):
        answer = get("/registry/{id}/peers", {"id": tree["dev-lead"]}, token=token, query=query)
        assert (answer.status, answer.raw) == (200, plain.raw), query
    answer = get(
        "/registry/discover/{id}", {"id": tree["frontend"]}, token=tree.tokens["backend"], headers={"X-Workspace-ID": tree["backend"]}, query={"x": "1"}
    )
    assert answer.status == 200


def test_peers_leave_out_a_blocked_literal_url(registry, tree, pg, caplog):
    with pg.cursor() as cur:
        cur.execute("UPDATE workspaces SET url = 'http://169.254.169.254/latest/' WHERE id = %s", (tree["frontend"],))
        cur.execute("UPDATE workspaces SET url = NULL WHERE id = %s", (tree["auditor"],))
    listed = {p["name"]: p for p in registry.peers(tree["backend"], tree.tokens["backend"]).body}
    assert listed["frontend"]["url"] == "" and listed["dev-lead"]["url"] == tree.urls["dev-lead"]
    assert listed["auditor"]["url"] == ""  # NULL: the seed's "no URL"
    assert "peers: leaving out an unsafe URL" in caplog.text


def test_peer_cards_as_stored(registry, tree, pg):
    with pg.cursor() as cur:
        cur.execute("UPDATE workspaces SET agent_card = 'null'::jsonb WHERE id = %s", (tree["frontend"],))
        cur.execute("UPDATE workspaces SET agent_card = '{}'::jsonb, tier = 3, active_tasks = 2 WHERE id = %s", (tree["auditor"],))
    listed = {p["name"]: p for p in registry.peers(tree["backend"], tree.tokens["backend"]).body}
    assert listed["frontend"]["agent_card"] is None
    assert (listed["auditor"]["agent_card"], listed["auditor"]["tier"], listed["auditor"]["active_tasks"]) == ({}, 3, 2)


def test_peers_refusals(registry, tree, pg):
    assert registry.peers(new_id()).body == {"error": "workspace not found"}
    assert registry.peers(tree["backend"]).body == {"error": "missing workspace auth token"}
    assert registry.peers(tree["backend"], tree.tokens["pm"]).body == {"error": "invalid workspace auth token"}
    assert registry.peers(tree["other-child"]).status == 200  # legacy: grandfathered
    with pg.cursor() as cur:
        cur.execute("UPDATE workspaces SET status = 'removed' WHERE id = %s", (tree["backend"],))
    assert registry.peers(tree["backend"], tree.tokens["backend"]).status == 410


def test_peers_etag_and_304(registry, tree, pg):
    token = tree.tokens["backend"]
    first = registry.peers(tree["backend"], token)
    assert first.headers["vary"] == "Authorization"
    same = registry.peers(tree["backend"], token, headers={"If-None-Match": first.headers["etag"]})
    assert (same.status, same.raw) == (304, "")
    with pg.cursor() as cur:
        cur.execute("UPDATE workspaces SET active_tasks = 1 WHERE id = %s", (tree["frontend"],))
    changed = registry.peers(tree["backend"], token, headers={"If-None-Match": first.headers["etag"]})
    assert changed.status == 200 and changed.headers["etag"] != first.headers["etag"]


# ------------------------------------------------------------------ check-access


def test_check_access_refusals_and_bad_bodies(registry, tree, pg):
    token = tree.tokens["backend"]
    assert registry.check_access(tree["backend"], tree["frontend"]).body == {"error": "missing workspace auth token"}
    # Another workspace's token is not the caller's.
    assert registry.check_access(tree["backend"], tree["frontend"], tree.tokens["frontend"]).status == 401
    # Unknown target: false, as in the seed.
    assert registry.check_access(tree["backend"], new_id(), token).body == {"allowed": False}
    for body, reason in (
        ({"caller_id": tree["backend"]}, "target_id: is required"),
        ({"caller_id": tree["backend"], "target_id": "nope"}, "target_id: Value error, must be a UUID"),
        ({"caller_id": 7, "target_id": tree["pm"]}, "caller_id: Input should be a valid string"),
    ):
        answer = registry.check_access_body(body, token)
        assert answer.status == 400 and answer.body["error"].startswith(reason), answer.body
    assert registry.check_access_body(None, token, raw="{not json").status == 400
    assert registry.check_access_body(None, token, raw="[]").body == {"error": "request body must be a JSON object"}
    with pg.cursor() as cur:
        cur.execute("UPDATE workspaces SET status = 'removed' WHERE id = %s", (tree["backend"],))
    assert registry.check_access(tree["backend"], tree["frontend"], token).status == 410


def test_an_unknown_caller_asking_about_itself_is_allowed_as_in_the_seed(registry):
    ws = new_id()
    assert registry.check_access(ws, ws).body == {"allowed": True}


# ------------------------------------------------------------------ both payload formats


@pytest.mark.parametrize("api_format", ["rest", "http"], indirect=True)
def test_the_reads_in_both_payload_formats(registry, tree, api_format):
    """REST (1.0) and HTTP API (2.0) events: the same answers, headers and
    refusals (2.0 joins a repeated header with commas)."""
    caller, target, token = tree["backend"], tree["frontend"], tree.tokens["backend"]
    answer = registry.discover(caller, target, token)
    assert answer.body == {"id": target, "url": tree.urls["frontend"], "name": "frontend"}
    assert (registry.discover(caller, target, token, headers={"If-None-Match": answer.headers["etag"]}).status) == 304
    assert registry.discover(None, target, token).body == {"error": "X-Workspace-ID header is required"}
    assert registry.discover(f"{caller},{tree['pm']}", target, token).status == 400
    assert [p["name"] for p in registry.peers(tree["dev-lead"], tree.tokens["dev-lead"], q="engineer").body] == ["backend", "frontend"]
    assert registry.check_access(caller, target, token).body == {"allowed": True}
    assert registry.discover(caller, tree["auditor"], tree.tokens["frontend"]).status == 401
