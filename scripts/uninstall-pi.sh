#!/usr/bin/env bash
# Undo scripts/install-pi.sh: stop and disable the units, remove them with the journald drop-in, the udev rules,
# the venv and the users. The config (/etc/allervers) and the event log (/var/lib/allervers) are kept unless
# --purge: they are the association's records. Debian packages stay (other things may use them).
#
#   sudo scripts/uninstall-pi.sh            remove allervers, keep config and data
#   sudo scripts/uninstall-pi.sh --purge    also remove /etc/allervers and /var/lib/allervers
#   scripts/uninstall-pi.sh --dry-run       print every action, change nothing
#   --root DIR (or ALLERVERS_ROOT=DIR)      work on the tree DIR instead of /
set -euo pipefail

SRC=$(cd "$(dirname "$0")/.." && pwd)
ROOT=${ALLERVERS_ROOT:-/}
DRY=0
PURGE=0

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }

while [ $# -gt 0 ]; do
  case $1 in
    --dry-run|-n) DRY=1 ;;
    --root) ROOT=${2:?--root needs a directory}; shift ;;
    --root=*) ROOT=${1#--root=} ;;
    --purge) PURGE=1 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "uninstall-pi.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

# shellcheck source=scripts/pi-common.sh
. "$SRC/scripts/pi-common.sh"

echo "allervers uninstall: ${ROOT}$( [ "$DRY" -eq 1 ] && echo ' (dry run: nothing will change)')"
preflight

remove() {  # remove PATH [DESCRIPTION]: a file, a symlink or a whole tree
  local p
  p=$(R "$1")
  if [ -e "$p" ] || [ -L "$p" ]; then act "remove ${2:-$1}" rm -rf -- "$p"; fi
}

# --- 1. units: stop, disable, remove ------------------------------------------------------------------------------
for unit in "${ENABLE_UNITS[@]}" "$STATE_MOUNT"; do
  if live_root && systemd_running && systemctl is-active --quiet "$unit"; then
    act "stop $unit" systemctl stop "$unit"
  fi
  state=$(sc is-enabled "$unit" 2>/dev/null || true)
  if [ "$state" = "enabled" ]; then act "disable $unit" sc disable "$unit"; fi
done
for unit in "${UNIT_FILES[@]}" "$STATE_MOUNT"; do
  remove "/etc/systemd/system/$unit"
done
remove "$(dirname "$KIOSK_DROPIN")" "$(dirname "$KIOSK_DROPIN") (the controller's kiosk drop-in)"
remove /etc/systemd/journald.conf.d/allervers.conf
remove "$UDEV_RULES"
if live_root && systemd_running && [ "$CHANGES" -gt 0 ]; then
  act "systemctl daemon-reload" systemctl daemon-reload
  act "restart journald (back to its own limits)" systemctl restart systemd-journald
  act "reload udev rules" udev_reload
fi
if live_root && command -v raspi-config >/dev/null && [ "$(raspi-config nonint get_overlay_conf 2>/dev/null)" = "0" ]; then
  warn "the overlay (read-only) root is still on: raspi-config nonint disable_overlayfs, then reboot"
fi

# --- 2. programs and files ------------------------------------------------------------------------------------------
remove /opt/allervers "/opt/allervers (the venv)"
if [ "$(readlink "$(R /usr/local/bin/allervers)" 2>/dev/null)" = /opt/allervers/venv/bin/allervers ]; then
  remove /usr/local/bin/allervers "/usr/local/bin/allervers (the link to the venv)"
fi
# Our managed policies would keep locking Chromium down for everyone else.
shopt -s nullglob
for policy in "$(R /etc/chromium/policies/managed)"/allervers*.json; do
  remove "${policy#"${ROOT%/}"}"
done
shopt -u nullglob
if [ "$PURGE" -eq 1 ]; then
  remove /etc/allervers "/etc/allervers (the config)"
  remove /var/lib/allervers "/var/lib/allervers (the event log)"
else
  for kept in /etc/allervers /var/lib/allervers; do
    [ ! -e "$(R $kept)" ] || note "$kept kept (--purge removes it)"
  done
fi
if [ -d "$(R /srv/allervers)" ]; then
  if live_root && mountpoint -q "$SESSIONS_DIR"; then act "unmount $SESSIONS_DIR" umount "$SESSIONS_DIR"; fi
  remove /srv/allervers
fi

# The install's denial of cron and at to the visitor (a file it created and left empty goes too).
unlist() {
  local p
  p=$(R "$1")
  sed -i '/^allervers-visitor$/d' "$p"
  [ -s "$p" ] || rm -f "$p"
}
for deny in /etc/cron.deny /etc/at.deny; do
  if grep -qx allervers-visitor "$(R "$deny")" 2>/dev/null; then
    act "remove allervers-visitor from $deny" unlist "$deny"
  fi
done

# --- 3. users (their groups go with them; gpio, video, render, input are the system's) --------------------------------
remove_user() {
  with_root userdel "$1"
  # userdel keeps a user's group when USERGROUPS_ENAB is off: it is ours all the same.
  if group_exists "$1"; then with_root groupdel "$1"; fi
}
if group_exists allervers-display; then act "remove group allervers-display" with_root groupdel allervers-display; fi
for user in "${USERS[@]}"; do
  if user_exists "$user"; then
    act "remove user $user (and its group)" remove_user "$user"
  elif group_exists "$user"; then
    act "remove group $user" with_root groupdel "$user"
  fi
done

summary
