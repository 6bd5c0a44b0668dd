#!/bin/sh
# gen_ca.sh DIR - throwaway TLS material for the API simulator tests.
#
# Creates in DIR (all files 0600):
#   ca.pem, ca.key              test CA
#   server.pem, server.key      server certificate signed by the test CA,
#                               subjectAltName IP:127.0.0.1, IP:::1, DNS:localhost
#   other-ca.pem, other-ca.key  a second, unrelated CA ("wrong CA" tests)
# EC keys (prime256v1). Idempotent: does nothing when the files exist, the
# server certificate verifies against ca.pem and is valid for another day.
# Quiet on success; on failure prints openssl's messages and exits non-zero.
set -eu

if [ $# -ne 1 ] || [ -z "$1" ]; then
    echo "usage: $0 DIR" >&2
    exit 64
fi
dir=$1
umask 077
mkdir -p "$dir"

# Serialise concurrent runs on the same directory.
if command -v flock >/dev/null 2>&1; then
    exec 9>"$dir/.gen_ca.lock"
    flock 9
fi

all_there() {
    for f in ca.pem ca.key server.pem server.key other-ca.pem other-ca.key; do
        [ -s "$dir/$f" ] || return 1
    done
    openssl verify -CAfile "$dir/ca.pem" "$dir/server.pem" >/dev/null 2>&1 &&
        openssl x509 -noout -checkend 86400 -in "$dir/server.pem" >/dev/null 2>&1
}
if all_there; then
    exit 0
fi

tmp=$(mktemp -d "$dir/.gen_ca.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
log=$tmp/openssl.log

cat >"$tmp/openssl.cnf" <<'EOF'
[req]
distinguished_name = dn
[dn]
[v3_ca]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
[v3_server]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1,IP:::1,DNS:localhost
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
EOF

run() {
    if ! "$@" >>"$log" 2>&1; then
        cat "$log" >&2
        echo "gen_ca.sh: failed: $*" >&2
        exit 1
    fi
}

newkey() {
    run openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:prime256v1 -out "$1"
}

newca() { # KEY CERT CN
    newkey "$1"
    run openssl req -x509 -new -config "$tmp/openssl.cnf" -extensions v3_ca \
        -key "$1" -out "$2" -days 3650 -sha256 -subj "/CN=$3"
}

newca "$tmp/ca.key" "$tmp/ca.pem" "pam-planetscale test CA"
newca "$tmp/other-ca.key" "$tmp/other-ca.pem" "pam-planetscale unrelated CA"

newkey "$tmp/server.key"
run openssl req -new -config "$tmp/openssl.cnf" -key "$tmp/server.key" \
    -out "$tmp/server.csr" -subj "/CN=localhost"
run openssl x509 -req -in "$tmp/server.csr" -CA "$tmp/ca.pem" -CAkey "$tmp/ca.key" \
    -set_serial "0x$(openssl rand -hex 8)" -days 825 -sha256 \
    -extfile "$tmp/openssl.cnf" -extensions v3_server -out "$tmp/server.pem"

for f in ca.pem ca.key server.pem server.key other-ca.pem other-ca.key; do
    chmod 600 "$tmp/$f"
    mv -f "$tmp/$f" "$dir/$f"
done
