#!/usr/bin/env bash
# Install the voipwatch probe on a Raspberry Pi (Raspberry Pi OS / Debian 12) or
# any Debian-like machine with systemd:
#
#   sudo deploy/pi/install.sh https://collector.example.org [--token T]
#        [--link-type auto|cellular|wifi|ethernet|adsl] [--schedule hourly|daily|off]
#
# It checks its prerequisites first (Python >= 3.11 with venv, systemd) and says
# what to install when one is missing (exit 2). Then: a `voipwatch` system user,
# a virtualenv in /opt/voipwatch, the state directory /var/lib/voipwatch (key,
# config, spool), the systemd units, `voipwatch-probe setup` (config,
# registration with the collector, timers: by default an hourly pass without
# the throttle tests and a daily full pass), and `voipwatch-probe status`.
#
# Every path can be changed (the tests install into a scratch directory):
#   VOIPWATCH_PREFIX=/opt/voipwatch     the virtualenv
#   VOIPWATCH_STATE=/var/lib/voipwatch  key, config, spool
#   VOIPWATCH_UNIT_DIR=/etc/systemd/system
#   VOIPWATCH_SYSTEMCTL=systemctl       empty: install no timers (schedule with cron);
#                                       "systemctl --root=DIR" prepares an image offline
#   VOIPWATCH_USER=voipwatch            the account the timers run as
#   VOIPWATCH_NO_USER=1 (or --no-user)  create no account: run as the invoking user
#   VOIPWATCH_PYTHON=python3            the interpreter the virtualenv is made from
#   VOIPWATCH_PACKAGE=<this checkout>   what pip installs (a checkout, a wheel, a name)
set -euo pipefail

die() { echo "install.sh: $*" >&2; exit 2; }
usage="usage: sudo deploy/pi/install.sh COLLECTOR_URL [--token T] [--link-type TYPE] [--schedule hourly|daily|off] [--no-user]"

src=$(cd "$(dirname "$0")/../.." && pwd)
prefix=${VOIPWATCH_PREFIX:-/opt/voipwatch}
state=${VOIPWATCH_STATE:-/var/lib/voipwatch}
unit_dir=${VOIPWATCH_UNIT_DIR:-/etc/systemd/system}
systemctl=${VOIPWATCH_SYSTEMCTL-systemctl}
user=${VOIPWATCH_USER:-voipwatch}
no_user=${VOIPWATCH_NO_USER:-}
python=${VOIPWATCH_PYTHON:-python3}
package=${VOIPWATCH_PACKAGE:-$src}

collector=""; setup_args=(); schedule=hourly
while [ $# -gt 0 ]; do
  case "$1" in
    --token|--link-type)
      [ $# -ge 2 ] || die "$1 needs a value ($usage)"
      setup_args+=("$1" "$2"); shift 2 ;;
    --schedule)
      [ $# -ge 2 ] || die "--schedule needs a value: hourly, daily or off"
      case "$2" in hourly|daily|off) schedule=$2 ;; *) die "--schedule $2: expected hourly, daily or off" ;; esac
      shift 2 ;;
    --no-user) no_user=1; shift ;;
    -h|--help) echo "$usage"; exit 0 ;;
    -*) die "unknown option $1 ($usage)" ;;
    *) [ -z "$collector" ] || die "one collector URL only ($usage)"; collector=$1; shift ;;
  esac
done
[ -n "$collector" ] || die "$usage"
case "$collector" in
  http://*|https://*) ;;
  *) die "collector $collector: expected an http:// or https:// URL, e.g. https://collector.example.org" ;;
esac

# --- prerequisites: everything is checked before anything is changed -------------------
if [ -z "$no_user" ] && [ "$(id -u)" -ne 0 ]; then
  die "run as root to create the '$user' account and install the units (sudo deploy/pi/install.sh ...), or pass --no-user"
fi
command -v "$python" >/dev/null 2>&1 \
  || die "$python not found: install Python 3.11 or newer (Raspberry Pi OS / Debian 12: sudo apt install python3 python3-venv)"
version=$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null) \
  || die "$python does not run"
case "$version" in
  3.1[1-9]|3.[2-9][0-9]|[4-9].*) ;;
  *) die "Python $version found ($python), 3.11 or newer is needed: Raspberry Pi OS and Debian 12 (bookworm) have 3.11; on an older release upgrade the system, or point VOIPWATCH_PYTHON at a newer python3" ;;
esac
"$python" -c 'import venv, ensurepip' >/dev/null 2>&1 \
  || die "the Python venv module is missing: sudo apt install python3-venv"
if [ -n "$systemctl" ]; then
  command -v "${systemctl%% *}" >/dev/null 2>&1 \
    || die "$systemctl not found: the timers need systemd (or install without timers: VOIPWATCH_SYSTEMCTL= and schedule 'voipwatch-probe run' with cron)"
  if [ "$systemctl" = systemctl ] && [ ! -d /run/systemd/system ]; then
    die "systemd is not running on this machine (no /run/systemd/system): install without timers with VOIPWATCH_SYSTEMCTL= and schedule 'voipwatch-probe run' with cron"
  fi
fi
if [ -z "$no_user" ]; then
  command -v useradd >/dev/null 2>&1 || die "useradd not found: sudo apt install passwd"
fi

# --- the account, the virtualenv, the state directory ----------------------------------
if [ -n "$no_user" ]; then
  user=$(id -un)
elif ! id "$user" >/dev/null 2>&1; then
  useradd --system --home-dir "$state" --shell /usr/sbin/nologin "$user"
fi
group=$(id -gn "$user")
echo "install.sh: virtualenv in $prefix (pip install $package; this takes a few minutes on a Pi)"
"$python" -m venv "$prefix"
"$prefix/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade "$package"
install -d -m 0700 -o "$user" -g "$group" "$state"

# --- the units, with this install's paths ------------------------------------------------
units=(voipwatch-probe.service voipwatch-probe.timer voipwatch-probe-full.service voipwatch-probe-full.timer)
if [ -n "$systemctl" ]; then
  install -d "$unit_dir"
  for unit in "${units[@]}"; do
    sed -e "s|/opt/voipwatch|$prefix|g" -e "s|/var/lib/voipwatch|$state|g" \
        -e "s|^User=voipwatch$|User=$user|" -e "s|^Group=voipwatch$|Group=$group|" \
        "$src/deploy/systemd/$unit" > "$unit_dir/$unit.tmp"
    if [ "$state" != /var/lib/voipwatch ]; then  # StateDirectory= always means /var/lib/NAME
      sed -i -e '/^StateDirectory/d' "$unit_dir/$unit.tmp"
    fi
    chmod 0644 "$unit_dir/$unit.tmp"
    mv "$unit_dir/$unit.tmp" "$unit_dir/$unit"
  done
  if [ -d /run/systemd/system ]; then  # else preparing offline (systemctl --root=DIR)
    $systemctl daemon-reload
  fi
else
  schedule=off
fi

# --- configuration, registration, timers: the probe's own `setup` -----------------------
export VOIPWATCH_HOME="$state" VOIPWATCH_UNIT_DIR="$unit_dir" VOIPWATCH_SYSTEMCTL="$systemctl"
"$prefix/bin/voipwatch-probe" setup --no-input --collector "$collector" --schedule "$schedule" \
  ${setup_args[@]+"${setup_args[@]}"}
chown -R "$user:$group" "$state"
"$prefix/bin/voipwatch-probe" status
echo "install.sh: done. Stop and remove everything: docs/volunteer-guide.md (\"Stop and delete\")"
