#!/usr/bin/env bash
# Install the system packages the test suite and the lab use, with apt-get when
# root. Skips apt entirely when every command is already present.
set -euo pipefail

# command -> Debian package
declare -A NEEDED=(
  [nft]=nftables
  [ip]=iproute2
  [tc]=iproute2
  [conntrack]=conntrack        # the lab forgets old flows when a scenario changes
  [turnserver]=coturn
  [kamailio]=kamailio
  [pg_ctl]=postgresql
  [systemctl]=systemd          # install.sh's timers, enabled offline (--root)
  [systemd-analyze]=systemd    # `verify` on the units
  [podman]=podman              # the collector image built and run (tests/deploy/test_container.py)
  [runc]=runc                  # podman's runtime where cgroups are hybrid (crun refuses them)
  [debootstrap]=debootstrap    # the image's Debian base, with no image registry reachable
  [caddy]=caddy                # `caddy validate` on deploy/caddy/Caddyfile
  [chromium]=chromium          # the dashboard's browser tests (Playwright drives Debian's build)
  [dbus-daemon]=dbus           # a private session bus for the link type's D-Bus tests
)
# packages with no command of their own to test for
EXTRA_PACKAGES=(kamailio-tls-modules fonts-dejavu-core)  # DejaVu: Arabic glyphs for chromium

have() {
  command -v "$1" >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/"$1" >/dev/null 2>&1 \
    || [ -x "/usr/sbin/$1" ]
}

missing=()
for cmd in "${!NEEDED[@]}"; do
  have "$cmd" || missing+=("${NEEDED[$cmd]}")
done
for pkg in "${EXTRA_PACKAGES[@]}"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
if [ "$(id -u)" -ne 0 ]; then
  echo "missing system packages: ${missing[*]} (run as root, or: sudo apt-get install ${missing[*]})" >&2
  [ "${CI:-}" = "true" ] && exit 1
  exit 0
fi
echo "installing system packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# policy-rc.d keeps packages (coturn, postgresql) from starting services: the tests start their own
printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
trap 'rm -f /usr/sbin/policy-rc.d' EXIT
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
