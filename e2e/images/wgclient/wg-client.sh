#!/bin/sh
# A WireGuard client sidecar of our own for the real-node tests. It is NOT
# gluetun (whose module the Go proxy does not serve) and has no firewall:
# wireguard-go brings up tun0 with the address WG_ADDRESS, one peer
# WG_PEER_PUBLIC_KEY at WG_ENDPOINT (ip:port) for 0.0.0.0/0, and the key
# WG_PRIVATE_KEY. No route is changed: only what binds to tun0 uses it.
# Needs NET_ADMIN and /dev/net/tun.
set -eu
mkdir -p /var/run/wireguard
wireguard-go -f tun0 &
pid=$!
i=0
until [ -S /var/run/wireguard/tun0.sock ]; do
  i=$((i + 1)); [ $i -lt 100 ] || { echo "wg-client: no tun0" >&2; exit 1; }
  sleep 0.1
done
umask 077
echo "$WG_PRIVATE_KEY" >/tmp/wg.key
wg set tun0 private-key /tmp/wg.key peer "$WG_PEER_PUBLIC_KEY" endpoint "$WG_ENDPOINT" \
  allowed-ips 0.0.0.0/0 persistent-keepalive 5
ip addr add "$WG_ADDRESS" dev tun0
ip link set tun0 mtu 1380 up
echo "wg-client: tun0 up ($WG_ADDRESS, peer $WG_ENDPOINT)"
wait $pid
