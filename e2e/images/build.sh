#!/usr/bin/env bash
# Builds the real node's test images as docker-archive tarballs (no registry,
# no Docker engine) into a cache outside the repository, keyed by a hash of
# these recipes and the Debian package versions they copy, and prints that
# directory. cluster.sh --real-node imports them with `ctr images import`.
#
# Every image is a stand-in, documented in docs/real-node.md:
#   pause.tar        mediastack.local/pause:1         the sandbox (pause) image
#   busybox.tar      mediastack.local/busybox:1       test tools (sh, nc, wget, nslookup, httpd, ip)
#   app.tar          mediastack.local/app:1, lscr.io/linuxserver/sonarr:4.0.16,
#                    lscr.io/linuxserver/radarr:6.0.4 a uid-1000 linuxserver-style app
#   wgclient.tar     mediastack.local/wgclient:1      a WireGuard client (wireguard-go + wg), not gluetun
#   fail2ban.tar     mediastack.local/fail2ban:1      Debian's fail2ban (with python3 and iptables-nft)
#   qbittorrent.tar  mediastack.local/qbittorrent:1    Debian's qbittorrent-nox (version in the cache dir name)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cache=${MEDIASTACK_CACHE:-$HOME/.cache/mediastack-operator}
bbver=$(dpkg-query -W -f '${Version}' busybox-static)
qbver=$(dpkg-query -W -f '${Version}' qbittorrent-nox)
f2bver=$(dpkg-query -W -f '${Version}' fail2ban)
hash=$(cat "$here"/build.sh "$here"/mkimage.py "$here"/*/*.sh "$here"/*/*.conf | sha256sum | cut -c1-16)
out="$cache/images/${hash}_busybox-${bbver//:/_}_qbittorrent-${qbver//:/_}_fail2ban-${f2bver//:/_}"
images=(pause busybox app wgclient fail2ban qbittorrent)
nb=$("$here/../controlplane/build.sh" node) # wireguard-go
have_all() { for i in "${images[@]}"; do [ -s "$out/$i.tar" ] || return 1; done; }
if have_all; then echo "$out"; exit 0; fi
mkdir -p "$out"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# A root filesystem with a static busybox and all its applets.
base() {
  local r=$1 a
  mkdir -p "$r"/{bin,etc,tmp,proc,sys,dev,config,www,data}
  cp /bin/busybox "$r/bin/busybox"
  for a in $(/bin/busybox --list); do [ -e "$r/bin/$a" ] || ln -s busybox "$r/bin/$a"; done
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' >"$r/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' >"$r/etc/group"
  chmod 1777 "$r/tmp"
  echo pong >"$r/www/ping"
}
mk() { python3 "$here/mkimage.py" "$@"; }

base "$tmp/busybox"
mk "$tmp/busybox" "$out/busybox.tar" --tag mediastack.local/busybox:1 --cmd '["sh"]'

base "$tmp/pause"
cp "$here/pause/pause.sh" "$tmp/pause/pause"
mk "$tmp/pause" "$out/pause.tar" --tag mediastack.local/pause:1 --entrypoint '["/pause"]'

base "$tmp/app"
cp "$here/app/init.sh" "$tmp/app/init"
mk "$tmp/app" "$out/app.tar" --tag mediastack.local/app:1 \
  --tag lscr.io/linuxserver/sonarr:4.0.16 --tag lscr.io/linuxserver/radarr:6.0.4 \
  --entrypoint '["/init"]' --env PUID=911 --env PGID=911

# ldd_copy ROOT BINARY: the binary's shared libraries (and loader) into ROOT.
ldd_copy() {
  local lib
  for lib in $(ldd "$2" | grep -o '/[^ ]*'); do
    mkdir -p "$1$(dirname "$lib")"
    cp -L "$lib" "$1$lib"
  done
}

w="$tmp/wgclient"
base "$w"
mkdir -p "$w/usr/bin" "$w/var/run/wireguard"
cp "$here/wgclient/wg-client.sh" "$w/wg-client"
cp "$nb/wireguard-go" "$w/usr/bin/wireguard-go"
cp "$(command -v wg)" "$w/usr/bin/wg"
ldd_copy "$w" "$(command -v wg)"
mk "$w" "$out/wgclient.tar" --tag mediastack.local/wgclient:1 --entrypoint '["/wg-client"]'

# fail2ban: python3 with its standard library, the fail2ban package and
# Debian's configuration, iptables-nft with its extensions.
f="$tmp/fail2ban"
base "$f"
mkdir -p "$f/usr/bin" "$f/usr/sbin" "$f/usr/lib/python3/dist-packages" "$f/etc" "$f/usr/lib/x86_64-linux-gnu"
cp "$here/fail2ban/run.sh" "$f/run-fail2ban"
py=$(readlink -f /usr/bin/python3)
cp "$py" "$f/usr/bin/python3"
ldd_copy "$f" "$py"
cp -a "/usr/lib/$(basename "$py")" "$f/usr/lib/"
rm -rf "$f/usr/lib/$(basename "$py")"/{test,idlelib,tkinter,ensurepip,lib2to3}
for so in "$f/usr/lib/$(basename "$py")"/lib-dynload/*.so; do ldd_copy "$f" "$so"; done
cp -a /usr/lib/python3/dist-packages/fail2ban "$f/usr/lib/python3/dist-packages/"
cp -a /etc/fail2ban "$f/etc/"
rm -f "$f"/etc/fail2ban/jail.d/* # Debian enables an sshd jail there; ours is mounted
mkdir -p "$f/var/lib/fail2ban" "$f/run/fail2ban"
cp /usr/bin/fail2ban-server /usr/bin/fail2ban-client "$f/usr/bin/"
cp /usr/sbin/xtables-nft-multi "$f/usr/sbin/"
ldd_copy "$f" /usr/sbin/xtables-nft-multi
for t in iptables ip6tables iptables-save iptables-restore; do ln -sf xtables-nft-multi "$f/usr/sbin/$t"; done
cp -a /usr/lib/x86_64-linux-gnu/xtables "$f/usr/lib/x86_64-linux-gnu/"
for so in "$f"/usr/lib/x86_64-linux-gnu/xtables/*.so; do ldd_copy "$f" "$so"; done
mk "$f" "$out/fail2ban.tar" --tag mediastack.local/fail2ban:1 --entrypoint '["/run-fail2ban"]'

# qbittorrent-nox with exactly the shared libraries it links (ldd).
q="$tmp/qbittorrent"
base "$q"
cp "$here/qbittorrent/init.sh" "$q/init"
mkdir -p "$q/defaults"
cp "$here/qbittorrent/defaults.conf" "$q/defaults/qBittorrent.conf"
mkdir -p "$q/usr/bin"
cp /usr/bin/qbittorrent-nox "$q/usr/bin/"
ldd_copy "$q" /usr/bin/qbittorrent-nox
mk "$q" "$out/qbittorrent.tar" --tag mediastack.local/qbittorrent:1 \
  --entrypoint '["/init"]' --env PUID=911 --env PGID=911 --env WEBUI_PORT=8080
have_all
echo "$out"
