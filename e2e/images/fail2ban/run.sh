#!/bin/sh
# Stand-in for the fail2ban image our DaemonSet runs: Debian's fail2ban
# (fail2ban-server/-client, python3, iptables-nft) with its configuration in
# /etc/fail2ban; files mounted into /etc/fail2ban/{jail,action,filter}.d are
# used as they are. Runs in the foreground, logging to stderr.
set -eu
mkdir -p /run/fail2ban /var/run/fail2ban /var/lib/fail2ban
exec fail2ban-server -f -x --logtarget=stderr --loglevel=INFO
