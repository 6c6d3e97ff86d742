#!/usr/bin/env bash
# Install certmgr into .venv and run the main job on the embedded default: a temporary certmgr home with
# SQLite and a local CA, certificates for a sample OPC UA server and client, a real secure channel opened
# between them with those certificates, and the expiry list.
set -euo pipefail
cd "$(dirname "$0")/.."

. scripts/venv.sh
.venv/bin/python -m pip install -q .
certmgr=.venv/bin/certmgr

demo=$(mktemp -d "${TMPDIR:-/tmp}/certmgr-demo.XXXXXX")
export CERTMGR_HOME="$demo/home"
umask 077
.venv/bin/python -c 'import secrets; print(secrets.token_urlsafe(24))' > "$demo/passphrase"
export CERTMGR_CA_PASSPHRASE="$(cat "$demo/passphrase")"

step() { printf '\n== %s\n' "$*"; }
step "certmgr init (home $CERTMGR_HOME, SQLite)"
"$certmgr" init --ca-name "Demo CA" --org "certmgr demo"
step "certificate for a sample OPC UA server (UA-.NETStandard store layout)"
"$certmgr" issue --app-uri urn:certmgr-demo:server --store "$demo/stores/server" --role server \
    --dns localhost --ip 127.0.0.1
step "certificate for a sample OPC UA client (node-opcua store layout)"
"$certmgr" issue --app-uri urn:certmgr-demo:client --store "$demo/stores/client" --role client --layout node-opcua
step "real secure channels between them (asyncua on 127.0.0.1, SignAndEncrypt, each side validating with its store)"
"$certmgr" verify --app-uri urn:certmgr-demo:server --peer-app-uri urn:certmgr-demo:client
step "expiry list"
"$certmgr" list

cat <<MSG

Done. To keep working with this demo:
  export CERTMGR_HOME=$CERTMGR_HOME
  export CERTMGR_CA_PASSPHRASE=\$(cat $demo/passphrase)
  $certmgr --help
MSG
