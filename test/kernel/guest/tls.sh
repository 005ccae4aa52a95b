# Scenario 8, run before filesystem.sh: iomapd serves the image with --tls require and
# --tls-verify-peer, and its volume is marked require-tls. A plain nbd-client and a TLS client
# without a certificate are both refused; then filesystem.sh attaches over TLS with the client
# certificate (NBD_OPTS: -enable-tls -certfile -keyfile -cacertfile -tlshostname).
#
# The certificates come from the host in /run/rig/files (rig run --file), never through env.

TLS_FILES=/run/rig/files
for _f in ca-cert.pem client-cert.pem client-key.pem; do
  [ -r "$TLS_FILES/$_f" ] || fail "no $TLS_FILES/$_f in the guest"
done

# refused WHAT [nbd-client options...]: the attach must fail and leave /dev/nbd0 unconnected.
refused() {
  _refused_what=$1
  shift
  step "tls: $_refused_what is refused"
  if $NBD_CLIENT "$RIG_HOST" "$RIG_PORT" /dev/nbd0 -N "" -b 4096 "$@" >/tmp/refused.out 2>&1; then
    cat /tmp/refused.out
    $NBD_CLIENT -d /dev/nbd0 || true
    fail "$_refused_what attached to a --tls require server"
  fi
  sed 's/^/  nbd-client: /' /tmp/refused.out
  [ "$($BLOCKDEV --getsize64 /dev/nbd0)" = 0 ] || fail "/dev/nbd0 has a size after a refused attach"
}

refused "a plain client"
refused "a TLS client without a certificate" -enable-tls -cacertfile "$TLS_FILES/ca-cert.pem" -tlshostname localhost
step "tls: attach with the client certificate"
