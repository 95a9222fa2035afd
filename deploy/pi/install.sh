#!/usr/bin/env bash
# Install the voipwatch probe on a Raspberry Pi (Raspberry Pi OS / Debian):
#   sudo deploy/pi/install.sh https://collector.example.org [--link-type cellular|wifi|adsl] [--token T]
# Creates the `voipwatch` user, a virtualenv in /opt/voipwatch, the state
# directory /var/lib/voipwatch (key, spool), registers the key with the
# collector and enables an hourly measurement timer (without the throttle
# tests, up to 1 MB each) and a daily full pass.
set -euo pipefail
if [ "$(id -u)" -ne 0 ]; then
  echo "install.sh must run as root (sudo deploy/pi/install.sh COLLECTOR_URL)" >&2
  exit 2
fi
if [ $# -lt 1 ]; then
  echo "usage: sudo deploy/pi/install.sh COLLECTOR_URL [--link-type TYPE] [--token T]" >&2
  exit 2
fi
collector=$1; shift
link_type=""; token=""
while [ $# -gt 0 ]; do
  case "$1" in
    --link-type) link_type=$2; shift 2 ;;
    --token) token=$2; shift 2 ;;
    *) echo "unknown option: $1" >&2; exit 2 ;;
  esac
done
src=$(cd "$(dirname "$0")/../.." && pwd)

id voipwatch >/dev/null 2>&1 || useradd --system --home /var/lib/voipwatch --shell /usr/sbin/nologin voipwatch
install -d -o voipwatch -g voipwatch -m 0700 /var/lib/voipwatch
python3 -m venv /opt/voipwatch
/opt/voipwatch/bin/pip install --quiet "$src"
units=(voipwatch-probe.service voipwatch-probe.timer voipwatch-probe-full.service voipwatch-probe-full.timer)
for unit in "${units[@]}"; do
  install -m 0644 "$src/deploy/systemd/$unit" /etc/systemd/system/
done
if [ -n "$link_type" ]; then
  sed -i "s|^Environment=VOIPWATCH_RUN_ARGS=.*|Environment=VOIPWATCH_RUN_ARGS=--link-type $link_type|" \
    /etc/systemd/system/voipwatch-probe.service /etc/systemd/system/voipwatch-probe-full.service
fi
register=(/opt/voipwatch/bin/voipwatch-probe register --collector "$collector")
[ -n "$token" ] && register+=(--token "$token")
runuser -u voipwatch -- env VOIPWATCH_HOME=/var/lib/voipwatch "${register[@]}"
systemctl daemon-reload
systemctl enable --now voipwatch-probe.timer voipwatch-probe-full.timer
echo "installed: hourly passes (no throttle tests) and a daily full pass; logs: journalctl -u 'voipwatch-probe*'"
