-- Demo MariaDB target, TLS only for the vault (the certificates come from the compose `certs` service). The vault's
-- administrator has least privilege (README, Target safety): CREATE USER, PROCESS, CONNECTION ADMIN, and with GRANT
-- OPTION only what one-time accounts may get on `shop`. A shared privileged account to rotate. Demo passwords only.
CREATE USER 'vault_admin'@'%' IDENTIFIED BY 'mysql-vault-admin-password' REQUIRE SSL;
GRANT CREATE USER, PROCESS, CONNECTION ADMIN ON *.* TO 'vault_admin'@'%';
CREATE DATABASE shop;
GRANT SELECT, INSERT, UPDATE, DELETE ON shop.* TO 'vault_admin'@'%' WITH GRANT OPTION;
CREATE USER 'app_dba'@'%' IDENTIFIED BY 'app-dba-initial-password';
GRANT ALL PRIVILEGES ON shop.* TO 'app_dba'@'%';
CREATE TABLE shop.orders (id INT PRIMARY KEY, total DECIMAL(10, 2));
INSERT INTO shop.orders VALUES (1, 9.99), (2, 42.00);
