#!/bin/sh
# Garrison behind the CA suite's command contract (conformance/README.md), the
# way any other implementation would be wrapped: TestCACommand runs
#
#   sh testdata/garrison-ca-impl.sh GARRISON {addr} {roots} {tokens} {tmp}
#   revoke: GARRISON ca revoke --data-dir {tmp}/data --serial {serial}
set -eu
garrison=$1 addr=$2 roots=$3 tokens=$4 tmp=$5
data=$tmp/data
tokenfile=$tmp/token-hashes.yaml
mkdir -p "$tmp/config"
"$garrison" ca init --data-dir "$data" --trust-domain cluster.local >/dev/null
token() {
	"$garrison" ca token create --token-file "$tokenfile" --namespace "$1" --service-account "$2" ${3:+--expires "$3"}
}
{
	echo "expired: $(token default old 1s)"
	echo "a: $(token default a)"
	echo "b: $(token default b)"
	echo "c: $(token default c)"
} >"$tokens.tmp"
# The contract: the expired token has expired by the time {tokens} exists.
sleep 2
mv "$tokens.tmp" "$tokens"
cp "$data/ca/root-cert.pem" "$roots"
exec "$garrison" serve --config "$tmp/config" --data-dir "$data" --trust-domain cluster.local \
	--authz-addr 127.0.0.1:0 --monitoring-addr 127.0.0.1:0 \
	--ca-addr "$addr" --ca-bundle-addr 127.0.0.1:0 --ca-token-file "$tokenfile"
