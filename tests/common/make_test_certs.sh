#!/usr/bin/env bash
# Writes a throwaway PKI for TLS tests into DIR with the openssl CLI: a CA (ca.crt), a server
# certificate for localhost and 127.0.0.1 (server.crt, server.key), a client certificate
# (client.crt, client.key), both signed by the CA, and a self-signed certificate no CA vouches
# for (stranger.crt, stranger.key). EC P-256 keys, valid for two days.
set -euo pipefail
dir=$1
mkdir -p "$dir"
cd "$dir"
ec=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes)
openssl req -x509 -days 2 "${ec[@]}" -keyout ca.key -out ca.crt -subj /CN=switchyard-test-ca
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' >server.ext
printf 'extendedKeyUsage=clientAuth\n' >client.ext
for who in server client; do
  openssl req "${ec[@]}" -keyout "$who.key" -out "$who.csr" -subj "/CN=switchyard-test-$who"
  openssl x509 -req -in "$who.csr" -CA ca.crt -CAkey ca.key -days 2 -extfile "$who.ext" \
    -set_serial "0x$(openssl rand -hex 8)" -out "$who.crt"
done
openssl req -x509 -days 2 "${ec[@]}" -keyout stranger.key -out stranger.crt \
  -subj /CN=switchyard-test-stranger -addext subjectAltName=DNS:localhost,IP:127.0.0.1
rm -f ./*.csr ./*.ext
