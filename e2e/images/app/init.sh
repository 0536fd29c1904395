#!/bin/sh
# Stand-in for a linuxserver.io app image (Sonarr, Radarr...): the same
# contract, none of the app. Starts as root, applies UMASK, makes /config
# owned by PUID:PGID, gives the image's user "abc" uid PUID and gid PGID (as
# linuxserver's init does), then runs as abc (no supplementary groups) and
# serves HTTP on APP_PORT (default 8989) with GET /ping answering 200, like
# the *arr health route. TZ is passed through.
set -eu
PUID=${PUID:-911} PGID=${PGID:-911}
umask "${UMASK:-022}"
mkdir -p /config
chown "$PUID:$PGID" /config
echo "stand-in app: uid=$PUID gid=$PGID umask=$(umask) TZ=${TZ:-unset} port=${APP_PORT:-8989}"
echo "abc:x:$PUID:$PGID:abc:/config:/bin/sh" >>/etc/passwd
echo "abc:x:$PGID:" >>/etc/group
# su execs the shell, which execs httpd: the app stays PID 1.
exec su -p -s /bin/sh abc -c 'exec httpd -f -v -p "$0" -h /www' "${APP_PORT:-8989}"
