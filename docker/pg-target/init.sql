-- Demo PostgreSQL target (scram-sha-256): a shared privileged role the vault will take over and rotate, and a
-- read-only role the ephemeral policy lets vendors have.
CREATE ROLE app_owner LOGIN PASSWORD 'app-owner-initial-password' CREATEDB;
CREATE ROLE billing_ro NOLOGIN;
CREATE DATABASE billing OWNER app_owner;
GRANT pg_read_all_data TO billing_ro;
