# fail2ban expands a jail's logpath glob only when it (re)loads its
# configuration, and Traefik's log file moves with every new pod or
# container restart. Reload (jails keep running, bans stay) whenever the set
# of files behind the glob changes.
prev=""
while :; do
  cur="$(ls -1 {{GLOBS}} 2>/dev/null)"
  if [ "$cur" != "$prev" ] && fail2ban-client reload >/dev/null 2>&1; then
    prev="$cur"
  fi
  sleep 30
done
