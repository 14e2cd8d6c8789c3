-- Server-side time-outs for the role the registry connects as, in this
-- database only. They used to travel as the libpq startup parameter
-- `options=-c statement_timeout=...`, which RDS Proxy refuses ("Feature not
-- supported: RDS Proxy currently doesn't support command-line options"), and
-- a `SET` on every new connection would pin the session to one database
-- connection, defeating the proxy. A role default needs neither: Postgres
-- applies it to every session the proxy opens for this role.
--
-- Every request is one short function call, so a few seconds is generous;
-- the sweep's statements are bounded by its per-run caps. A role shared with
-- other software (an existing platform database) gets the same defaults: give
-- the registry a role of its own there (docs/deploy.md). Change the values
-- with the same statement; new sessions pick them up.
DO $$
BEGIN
    EXECUTE format('ALTER ROLE %I IN DATABASE %I SET statement_timeout = %L', current_user, current_database(), '5s');
    EXECUTE format('ALTER ROLE %I IN DATABASE %I SET lock_timeout = %L', current_user, current_database(), '3s');
    -- A container frozen or killed inside the sweep's transaction must not
    -- hold its row locks until the proxy notices.
    EXECUTE format('ALTER ROLE %I IN DATABASE %I SET idle_in_transaction_session_timeout = %L', current_user, current_database(), '60s');
    -- psycopg2 sends `SET datestyle TO 'ISO'` on connecting when the
    -- server's DateStyle does not start with ISO, and that SET would pin
    -- every session. ISO, MDY is the default of Postgres, RDS and Aurora;
    -- this keeps it so for the registry's role whatever the database says.
    EXECUTE format('ALTER ROLE %I IN DATABASE %I SET datestyle = %L', current_user, current_database(), 'ISO, MDY');
END $$;
