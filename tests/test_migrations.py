"""Migrations: idempotent, and additive on an existing platform database."""

import psycopg2
import pytest

from devstack import harness
from registry import migrate


@pytest.fixture
def empty_db(servers):
    """A fresh database on the same server, reached through the proxy."""
    name = "migration_test"
    harness.create_database(servers.database_url, name)
    yield servers.proxy.dsn(dbname=name)  # the runner connects through the RDS Proxy stand-in
    harness.drop_database(servers.database_url, name)


def test_apply_twice_is_a_no_op(empty_db):
    first = migrate.apply(empty_db)
    assert first == [name for name, _ in migrate.planned()]
    assert "sql/heartbeat.sql" in first and first[0] == "0001_molecule_core_tables.sql"
    assert migrate.apply(empty_db) == []


def test_changed_migration_is_refused(empty_db, monkeypatch, tmp_path):
    migrate.apply(empty_db)
    for p in migrate.migration_files():
        (tmp_path / p.name).write_text(p.read_text() + "\n-- edited\n")
    monkeypatch.setattr(migrate, "MIGRATIONS_DIR", tmp_path)
    with pytest.raises(RuntimeError, match="changed after it was applied"):
        migrate.apply(empty_db)


def test_changed_definition_is_applied_again(empty_db, monkeypatch, tmp_path):
    """registry/sql/ files are repeatable: an edit that keeps the contract
    replaces the function in place; one that changes its result columns is
    refused by Postgres itself, so it must become a new versioned name."""
    migrate.apply(empty_db)
    definitions = tmp_path / "sql"
    definitions.mkdir()
    for p in migrate.definition_files():
        (definitions / p.name).write_text(p.read_text())
    edited = definitions / "deregister.sql"
    edited.write_text(edited.read_text().replace("'deregistered'", "'deregistered-v2-edit'"))
    monkeypatch.setattr(migrate, "DEFINITIONS_DIR", definitions)
    assert migrate.apply(empty_db) == ["sql/deregister.sql"]
    conn = psycopg2.connect(empty_db)
    with conn.cursor() as cur:
        cur.execute("SELECT prosrc LIKE '%deregistered-v2-edit%' FROM pg_proc WHERE proname = 'registry_deregister_v2'")
        assert cur.fetchone() == (True,)
    conn.close()
    edited.write_text(edited.read_text().replace("new_status text,", "new_status text, extra text,", 1))
    with pytest.raises(psycopg2.Error, match="cannot change return type"):
        migrate.apply(empty_db)


def test_existing_platform_database_keeps_its_data_and_history(empty_db):
    """A database as molecule-core left it (043's first enum, rows, events)."""
    conn = psycopg2.connect(empty_db)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(
            """
            CREATE TYPE workspace_status AS ENUM ('provisioning','online','offline','degraded','failed','removed');
            CREATE TABLE workspaces (id UUID PRIMARY KEY DEFAULT gen_random_uuid(), name TEXT NOT NULL,
                status workspace_status DEFAULT 'provisioning', agent_card JSONB, url TEXT,
                last_heartbeat_at TIMESTAMPTZ, last_error_rate FLOAT DEFAULT 0, last_sample_error TEXT,
                active_tasks INTEGER DEFAULT 0, uptime_seconds INTEGER DEFAULT 0, current_task TEXT,
                created_at TIMESTAMPTZ DEFAULT now(), updated_at TIMESTAMPTZ DEFAULT now(), tier INTEGER DEFAULT 1);
            CREATE TABLE structure_events (id UUID PRIMARY KEY DEFAULT gen_random_uuid(), event_type TEXT NOT NULL,
                workspace_id UUID, agent_id UUID, target_id UUID, payload JSONB, created_at TIMESTAMPTZ DEFAULT now());
            INSERT INTO workspaces (id, name, status, url) VALUES ('3f2504e0-4f89-41d3-9a0c-0305e82c3301', 'old', 'online', 'http://127.0.0.1:1');
            INSERT INTO structure_events (event_type, workspace_id, payload) VALUES ('WORKSPACE_ONLINE', '3f2504e0-4f89-41d3-9a0c-0305e82c3301', '{}');
            """
        )
    migrate.apply(empty_db)
    with conn.cursor() as cur:
        cur.execute("SELECT name, status::text, url, monthly_spend, max_concurrent_tasks FROM workspaces")
        assert cur.fetchall() == [("old", "online", "http://127.0.0.1:1", 0, 1)]
        cur.execute("SELECT unnest(enum_range(NULL::workspace_status))::text")
        assert {r[0] for r in cur.fetchall()} >= {"paused", "hibernated"}
        # the platform's history is not replayed onto EventBridge
        cur.execute("SELECT count(*) FROM structure_events WHERE publish_pending")
        assert cur.fetchone() == (0,)
        cur.execute("SELECT to_regclass('workspace_auth_tokens') IS NOT NULL, to_regclass('a2a_queue') IS NOT NULL")
        assert cur.fetchone() == (True, True)
        # the fleet view: the existing workspace is in the listing index
        # (0011's batches), its history first in the change feed (xid 0)
        cur.execute("SELECT status::text, terms @@ 'old'::tsquery FROM registry_fleet")
        assert cur.fetchall() == [("online", True)]
        cur.execute("SELECT feed_xid::text FROM structure_events")
        assert cur.fetchall() == [("0",)]
        cur.execute("INSERT INTO structure_events (event_type) VALUES ('PLATFORM_EVENT') RETURNING feed_xid::text::bigint > 0")
        assert cur.fetchone() == (True,)
        cur.execute("SELECT indexrelid::regclass::text FROM pg_index WHERE indrelid = 'structure_events'::regclass AND indisvalid ORDER BY 1")
        assert {"idx_structure_events_feed", "idx_structure_events_type_feed", "idx_structure_events_workspace_feed"} <= {r[0] for r in cur.fetchall()}
    conn.close()


def test_a_concurrent_index_left_invalid_is_rebuilt(empty_db):
    """CREATE INDEX CONCURRENTLY that fails leaves an INVALID index, which
    IF NOT EXISTS would skip for ever: the runner drops and rebuilds it."""
    migrate.apply(empty_db)
    conn = psycopg2.connect(empty_db)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("UPDATE pg_index SET indisvalid = false WHERE indexrelid = 'idx_structure_events_feed'::regclass")
        cur.execute("SELECT oid FROM pg_class WHERE relname = 'idx_structure_events_feed'")
        (before,) = cur.fetchone()
        cur.execute("DELETE FROM registry_schema_migrations WHERE filename = '0011_fleet_view_indexes.sql'")
    assert migrate.apply(empty_db) == ["0011_fleet_view_indexes.sql"]
    with conn.cursor() as cur:
        cur.execute("SELECT i.indisvalid, c.oid <> %s FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE c.relname = 'idx_structure_events_feed'", (before,))
        assert cur.fetchone() == (True, True)
    conn.close()


def test_a_non_transactional_file_cut_short_is_run_again(empty_db, monkeypatch, tmp_path):
    """Its statements commit one by one; until the last one succeeded the
    file is not recorded, and the next run repeats it (each statement is
    idempotent)."""
    for p in migrate.migration_files():
        (tmp_path / p.name).write_text(p.read_text())
    broken = tmp_path / "0011_fleet_view_indexes.sql"
    original = broken.read_text()
    broken.write_text(original + "\nSELECT 1/0;\n")
    monkeypatch.setattr(migrate, "MIGRATIONS_DIR", tmp_path)
    with pytest.raises(psycopg2.errors.DivisionByZero):
        migrate.apply(empty_db)
    conn = psycopg2.connect(empty_db)
    with conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM registry_schema_migrations WHERE filename = '0011_fleet_view_indexes.sql'")
        assert cur.fetchone() == (0,)
        cur.execute("SELECT count(*) FROM pg_indexes WHERE indexname = 'idx_structure_events_type_feed'")
        assert cur.fetchone() == (1,)  # the statements before the failure stay done
    conn.close()
    broken.write_text(original)
    assert "0011_fleet_view_indexes.sql" in migrate.apply(empty_db)
    assert migrate.apply(empty_db) == []


def test_statements_are_split_where_they_end():
    sql = "select ';' ; select $$ a;b $$; select $x$ $$; $x$; /* c; /* d; */ */ select \"e;\"; -- f;\n select 'it''s;';\n-- only a comment\n"
    assert migrate.split_statements(sql) == [
        "select ';'",
        "select $$ a;b $$",
        "select $x$ $$; $x$",
        '/* c; /* d; */ */ select "e;"',
        "-- f;\n select 'it''s;'",
    ]
    assert migrate.concurrent_indexes("create index concurrently if not exists abc on t (x);") == ["abc"]


def test_command_line(empty_db, capsys):
    assert migrate.main(["--database-url", empty_db]) == 0
    assert "applied: 0001" in capsys.readouterr().out
    assert migrate.main(["--database-url", empty_db]) == 0
    assert "up to date" in capsys.readouterr().out


def test_discovery_columns_and_the_platforms_parent_index(empty_db):
    """0009 on a platform database that already has runtime and
    idx_workspaces_parent_id (molecule-core 001/011/014): nothing duplicated,
    the platform's index kept under its name; a row without a runtime reads
    as the platform's default."""
    conn = psycopg2.connect(empty_db)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(
            """
            CREATE TYPE workspace_status AS ENUM ('provisioning','online','offline','degraded','failed','removed');
            CREATE TABLE workspaces (id UUID PRIMARY KEY DEFAULT gen_random_uuid(), name TEXT NOT NULL, role TEXT,
                tier INTEGER DEFAULT 1, status workspace_status DEFAULT 'provisioning', url TEXT,
                parent_id UUID REFERENCES workspaces(id), forwarded_to UUID REFERENCES workspaces(id));
            CREATE INDEX IF NOT EXISTS idx_workspaces_parent_id ON workspaces(parent_id);
            INSERT INTO workspaces (id, name) VALUES ('3f2504e0-4f89-41d3-9a0c-0305e82c3301', 'old');
            ALTER TABLE workspaces ADD COLUMN IF NOT EXISTS runtime TEXT DEFAULT 'langgraph';
            INSERT INTO workspaces (id, name, runtime) VALUES ('3f2504e0-4f89-41d3-9a0c-0305e82c3302', 'ext', 'external');
            """
        )
    migrate.apply(empty_db)
    with conn.cursor() as cur:
        cur.execute(
            "SELECT indexname FROM pg_indexes WHERE tablename = 'workspaces' AND indexdef LIKE '%(parent_id)%' ORDER BY 1"
        )
        assert cur.fetchall() == [("idx_workspaces_parent_id",)]
        cur.execute("SELECT name, runtime FROM workspaces ORDER BY name")
        assert cur.fetchall() == [("ext", "external"), ("old", "langgraph")]
    conn.close()
