#!/bin/sh
# Demo only: a throwaway CA and server certificates for the PostgreSQL and MariaDB targets (`pg-target`,
# `mysql-target`), so the vault can check who it talks to: it sends passwords to databases only over TLS with a
# verified certificate. Runs once; keeps what exists.
set -eu
cd "${CERTS_DIR:-/certs}"
[ -f ca.pem ] && [ -f mysql-target.pem ] && [ -f pg-target.pem ] && { echo "demo certificates already made"; exit 0; }
command -v openssl >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends openssl >/dev/null; }
openssl req -x509 -newkey rsa:2048 -nodes -days 825 -subj '/CN=pam-vault demo CA' -keyout ca-key.pem -out ca.pem 2>/dev/null
for host in mysql-target pg-target; do
  openssl req -newkey rsa:2048 -nodes -subj "/CN=$host" -keyout "$host-key.pem" -out "$host.csr" 2>/dev/null
  printf 'subjectAltName=DNS:%s\n' "$host" > san.cnf
  openssl x509 -req -in "$host.csr" -CA ca.pem -CAkey ca-key.pem -CAcreateserial -days 825 -extfile san.cnf -out "$host.pem" 2>/dev/null
  # both servers' images run as uid 999; PostgreSQL insists the key is its own and 0600
  chown 999:999 "$host-key.pem" 2>/dev/null || true
  chmod 600 "$host-key.pem"
done
rm -f ./*.csr san.cnf ca-key.pem ca.srl
chmod 644 ca.pem mysql-target.pem pg-target.pem
echo "demo certificates made"
