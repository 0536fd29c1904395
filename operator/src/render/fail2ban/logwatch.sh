# fail2ban expands a jail's logpath globs only when it starts, and
# Traefik's log file moves with every new pod or container restart. This
# container has no jail files: `fail2ban-client reload` would parse its own
# (empty) configuration and leave the server without jails. So it tells
# the running server about the files itself, every {{INTERVAL}} s and per
# jail: a file behind the globs the jail does not watch is added (read from
# its start), a watched file that is gone is removed. Jails keep running,
# bans stay.
while :; do
  for jail in {{JAILS}}; do
    watched="$(fail2ban-client get "$jail" logpath 2>/dev/null | sed -n 's/^[|`]- //p')"
    [ -n "$watched" ] || continue
    for f in {{GLOBS}}; do
      [ -f "$f" ] || continue
      printf '%s\n' "$watched" | grep -qxF "$f" ||
        fail2ban-client set "$jail" addlogpath "$f" head >/dev/null 2>&1 || true
    done
    printf '%s\n' "$watched" | while IFS= read -r f; do
      [ -e "$f" ] || fail2ban-client set "$jail" dellogpath "$f" >/dev/null 2>&1 || true
    done
  done
  sleep {{INTERVAL}}
done
