-- Demo PostgreSQL 17 target (scram-sha-256). The vault's administrator has least privilege (README, Target safety):
-- CREATEROLE, pg_signal_backend, ADMIN OPTION (without INHERIT or SET) on the roles it rotates or grants, and CONNECT
-- WITH GRANT OPTION on the database one-time accounts may use. A shared privileged role the vault takes over and
-- rotates, and a read-only group role the ephemeral policy lets vendors have. Demo passwords only.
CREATE ROLE app_owner LOGIN PASSWORD 'app-owner-initial-password' CREATEDB;
CREATE ROLE billing_ro NOLOGIN;
CREATE DATABASE billing OWNER app_owner;
REVOKE CONNECT ON DATABASE billing FROM PUBLIC;
GRANT CONNECT ON DATABASE billing TO app_owner;

CREATE ROLE vault_admin LOGIN CREATEROLE PASSWORD 'pg-vault-admin-password';
GRANT pg_signal_backend TO vault_admin;
GRANT app_owner TO vault_admin WITH ADMIN OPTION, INHERIT FALSE, SET FALSE;
GRANT billing_ro TO vault_admin WITH ADMIN OPTION, INHERIT FALSE, SET FALSE;
GRANT CONNECT ON DATABASE billing TO vault_admin WITH GRANT OPTION;

\connect billing
CREATE TABLE invoices (id int PRIMARY KEY, total numeric(10, 2));
INSERT INTO invoices VALUES (1, 9.99), (2, 42.00);
ALTER TABLE invoices OWNER TO app_owner;
GRANT USAGE ON SCHEMA public TO billing_ro;
GRANT SELECT ON invoices TO billing_ro;
