#!/bin/sh
# Stand-in for lscr.io/linuxserver/qbittorrent: Debian's real qbittorrent-nox
# behind the linuxserver contract. Config lives in /config/qBittorrent
# (HOME=XDG_CONFIG_HOME=/config), WEBUI_PORT sets the WebUI port, UMASK is
# applied, /config is owned by PUID:PGID and the daemon runs as the image's
# user "abc" with uid PUID and gid PGID (as linuxserver's init does).
# Like linuxserver's init, a missing qBittorrent.conf is copied from the
# image's /defaults/qBittorrent.conf (legal notice accepted, downloads in
# /downloads/, the image's defaults); an existing one (say, written by an init
# container before) is kept as it is. The WebUI port is a command-line flag.
set -eu
PUID=${PUID:-911} PGID=${PGID:-911} WEBUI_PORT=${WEBUI_PORT:-8080}
umask "${UMASK:-022}"
conf=/config/qBittorrent/qBittorrent.conf
mkdir -p /config/qBittorrent
if [ ! -f "$conf" ]; then
  cp /defaults/qBittorrent.conf "$conf"
fi
chown -R "$PUID:$PGID" /config
export HOME=/config XDG_CONFIG_HOME=/config XDG_DATA_HOME=/config
echo "stand-in qbittorrent: uid=$PUID gid=$PGID umask=$(umask) webui=$WEBUI_PORT $(qbittorrent-nox --version)"
echo "abc:x:$PUID:$PGID:abc:/config:/bin/sh" >>/etc/passwd
echo "abc:x:$PGID:" >>/etc/group
exec su -p -s /bin/sh abc -c 'exec qbittorrent-nox --webui-port="$0"' "$WEBUI_PORT"
