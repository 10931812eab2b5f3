-- Demo MariaDB target: the vault's admin (CREATE USER, grant option, KILL of other sessions), a shared privileged
-- account to rotate, and a database vendors may be given SELECT on.
CREATE USER 'vault_admin'@'%' IDENTIFIED BY 'mysql-vault-admin-password';
GRANT ALL PRIVILEGES ON *.* TO 'vault_admin'@'%' WITH GRANT OPTION;
CREATE USER 'app_dba'@'%' IDENTIFIED BY 'app-dba-initial-password';
GRANT ALL PRIVILEGES ON *.* TO 'app_dba'@'%';
CREATE DATABASE shop;
CREATE TABLE shop.orders (id INT PRIMARY KEY, total DECIMAL(10, 2));
INSERT INTO shop.orders VALUES (1, 9.99), (2, 42.00);
