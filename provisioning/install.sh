#!/usr/bin/env bash
# Turn a Raspberry Pi OS Lite (Bookworm) or Debian 12 system into the community hotspot.
#
#   sudo provisioning/install.sh              # install or update; safe to run again
#   sudo provisioning/install.sh --dry-run    # print every change, make none
#   sudo provisioning/install.sh --root DIR --skip-venv   # into a staging tree
#
# This script checks the system's tools, installs the Debian packages the hotspot needs (not
# with --root or --dry-run), then hands over to 'python3 -m hotspot.provision', which does the
# rest idempotently. See docs/operators.md, "From a blank SD card to a working hotspot".
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source_dir="$(dirname "$here")"

root="/"
dry_run=0
for arg in "$@"; do
  case "$arg" in
    --dry-run) dry_run=1 ;;
    --root=*) root="${arg#--root=}" ;;
    -h|--help)
      sed -n '2,10p' "$0"
      exit 0 ;;
  esac
done
# "--root DIR" as two words
previous=""
for arg in "$@"; do
  if [ "$previous" = "--root" ]; then root="$arg"; fi
  previous="$arg"
done

fail() {
  echo "install: $*" >&2
  exit 1
}

command -v python3 >/dev/null 2>&1 || fail "python3 is missing: apt-get install python3"
python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
  || fail "Python 3.11 or newer is needed (Raspberry Pi OS Bookworm / Debian 12 have it)"

# Debian packages: the venv module, NetworkManager's dnsmasq, and the Wi-Fi tools.
packages=(python3-venv network-manager dnsmasq-base iw rfkill)
if [ "$root" = "/" ] && [ "$dry_run" -eq 0 ]; then
  [ "$(id -u)" -eq 0 ] || fail "run as root: sudo $0 $*"
  missing=()
  for pkg in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" \
      || missing+=("$pkg")
  done
  if [ "${#missing[@]}" -gt 0 ]; then
    echo "installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y --no-install-recommends "${missing[@]}" \
      || fail "could not install ${missing[*]} (is the Pi online for this first setup?)"
  fi
elif [ "$dry_run" -eq 1 ] && [ "$root" = "/" ]; then
  echo "would check the Debian packages: ${packages[*]}"
fi

cd "$source_dir"
exec env PYTHONPATH="$source_dir" PYTHONDONTWRITEBYTECODE=1 python3 -m hotspot.provision "$@"
