#!/bin/sh
# Stand-in for a linuxserver.io app image (Sonarr, Radarr...): the same
# contract, none of the app. Starts as root, applies UMASK, makes /config
# owned by PUID:PGID, then drops to PUID:PGID (no supplementary groups) and
# serves HTTP on APP_PORT (default 8989) with GET /ping answering 200, like
# the *arr health route. TZ is passed through.
set -eu
PUID=${PUID:-911} PGID=${PGID:-911}
umask "${UMASK:-022}"
mkdir -p /config
chown "$PUID:$PGID" /config
echo "stand-in app: uid=$PUID gid=$PGID umask=$(umask) TZ=${TZ:-unset} port=${APP_PORT:-8989}"
exec setpriv --reuid="$PUID" --regid="$PGID" --clear-groups -- httpd -f -v -p "${APP_PORT:-8989}" -h /www
