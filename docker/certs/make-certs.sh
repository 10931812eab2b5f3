#!/bin/sh
# Demo only: a throwaway CA and a server certificate for the MariaDB target (`mysql-target`), so the vault can check
# who it talks to (it speaks to MySQL/MariaDB only over TLS with a verified certificate). Runs once; keeps what exists.
set -eu
cd "${CERTS_DIR:-/certs}"
[ -f ca.pem ] && [ -f mysql-target.pem ] && { echo "demo certificates already made"; exit 0; }
command -v openssl >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends openssl >/dev/null; }
openssl req -x509 -newkey rsa:2048 -nodes -days 825 -subj '/CN=pam-vault demo CA' -keyout ca-key.pem -out ca.pem
openssl req -newkey rsa:2048 -nodes -subj '/CN=mysql-target' -keyout mysql-target-key.pem -out mysql-target.csr
printf 'subjectAltName=DNS:mysql-target\n' > san.cnf
openssl x509 -req -in mysql-target.csr -CA ca.pem -CAkey ca-key.pem -CAcreateserial -days 825 -extfile san.cnf -out mysql-target.pem
rm -f mysql-target.csr san.cnf ca-key.pem ca.srl
# the server runs as the image's mysql user: the demo key is world-readable inside this demo volume only
chmod 644 mysql-target-key.pem ca.pem mysql-target.pem
echo "demo certificates made"
