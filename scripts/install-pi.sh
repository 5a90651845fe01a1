#!/usr/bin/env bash
# Install allervers on a fresh Raspberry Pi OS (bookworm, 64-bit, Pi 4 or 5): Debian packages, users and groups,
# a venv in /opt/allervers, the config in /etc/allervers (never overwritten), state in /var/lib/allervers, the
# systemd units (enabled), udev rules for stable serial names, a journald size cap, optionally a read-only root.
#
# Idempotent: every step looks at the real state first and acts only on what differs, so running it again (after
# a `git pull`, to upgrade) changes only what changed, and a third run changes nothing.
#
#   sudo scripts/install-pi.sh                 install or upgrade
#   scripts/install-pi.sh --dry-run            print every action it would take, change nothing
#   sudo scripts/install-pi.sh --read-only-root   also: state on the partition labelled allervers-data, and
#                                              raspi-config's overlay file system for a root that never changes
#   --root DIR (or ALLERVERS_ROOT=DIR)         install into the tree DIR instead of / (an image, or the tests);
#                                              host-wide actions (apt, daemon-reload, restarts) are then skipped
#   --no-kiosk                                 no public terminal: no cage/Chromium units, and the controller
#                                              keeps its strict sandbox (allervers.service.d/kiosk.conf not installed)
#   --skip STEP[,STEP]                         skip steps: apt, venv (e.g. a venv already provided)
set -euo pipefail

SRC=$(cd "$(dirname "$0")/.." && pwd)
ROOT=${ALLERVERS_ROOT:-/}
DRY=0
RO_ROOT=0
KIOSK=1
SKIP=","

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }

while [ $# -gt 0 ]; do
  case $1 in
    --dry-run|-n) DRY=1 ;;
    --root) ROOT=${2:?--root needs a directory}; shift ;;
    --root=*) ROOT=${1#--root=} ;;
    --read-only-root) RO_ROOT=1 ;;
    --no-kiosk) KIOSK=0 ;;
    --skip) SKIP+="${2:?--skip needs a list}," ; shift ;;
    --skip=*) SKIP+="${1#--skip=}," ;;
    -h|--help) usage; exit 0 ;;
    *) echo "install-pi.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

# shellcheck source=scripts/pi-common.sh
. "$SRC/scripts/pi-common.sh"

# --- what gets installed ----------------------------------------------------------------------------------------

APT_PACKAGES=(
  python3 python3-venv python3-dev     # the venv; -dev for wheels built on the Pi
  chromium cage foot fonts-dejavu-core # the public screen: browser, Wayland kiosk compositor, launcher terminal
  chromium-l10n                        # the browser's own pages (errors, print preview) in French, not only en-US
  cups cups-client cups-bsd            # printing for visitors
  sane-utils sane-airscan              # scanning for visitors: scanimage; network MFPs (eSCL/WSD) without a driver
  keyutils                             # the wipe empties the visitor's kernel keyrings (libkeyutils)
  fake-hwclock systemd-timesyncd       # no RTC: restore the last known time at boot, NTP once the link is up
  ca-certificates                      # MQTT over TLS to the association's broker
)

echo "allervers install: source $SRC -> ${ROOT}$( [ "$DRY" -eq 1 ] && echo ' (dry run: nothing will change)')"
preflight

# --- 1. Debian packages -----------------------------------------------------------------------------------------
if skipped apt; then
  note "apt packages: skipped (--skip apt)"
elif ! live_root; then
  note "apt packages: skipped under --root (the host's packages are not the tree's)"
else
  missing=()
  for pkg in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  if [ ${#missing[@]} -eq 0 ]; then
    ok "apt packages: all ${#APT_PACKAGES[@]} installed"
  else
    act "apt-get install ${missing[*]}" apt_install "${missing[@]}"
  fi
fi

# --- 2. groups and users ----------------------------------------------------------------------------------------
ensure_group gpio             # Raspberry Pi OS has it (udev gives it /dev/gpiochip*); plain Debian does not
for g in video render input; do ensure_group "$g"; done
ensure_group allervers-display  # cage's Wayland socket: the launcher and the visitor's browser draw on it
ensure_group scanner            # libsane1's udev rules give it the USB scanners: the visitor's scans go through it
# CUPS's SystemGroup (the cups package makes it): the controller purges visitors' print jobs as a member
# (allervers.service.d/kiosk.conf, SupplementaryGroups=), and a unit naming a missing group would not start.
[ "$KIOSK" -eq 0 ] || ensure_group lpadmin
ensure_user allervers         /var/lib/allervers      "allervers controller"     dialout,gpio
ensure_user allervers-kiosk   /run/allervers-kiosk    "allervers public screen"  video,render,input,allervers-display
ensure_user allervers-visitor "$SESSIONS_DIR"         "allervers visitor session" allervers-display,scanner
ensure_user allervers-console /nonexistent            "allervers driver console" allervers

# cron and at would let one visitor leave a job that runs during the next visitor's session: denied to the session
# user (a name in cron.deny / at.deny, unless an allow file already leaves it out). `allervers doctor` checks it.
deny_scheduler() {  # deny_scheduler ALLOW DENY: append the visitor to DENY
  local allow=$1 deny=$2
  if [ -e "$(R "$allow")" ] && ! grep -qx allervers-visitor "$(R "$allow")"; then
    ok "$allow leaves allervers-visitor out"
  elif [ -e "$(R "$allow")" ]; then
    warn "$allow lists allervers-visitor: remove it (a visitor could leave a job for the next one)"
  elif grep -qx allervers-visitor "$(R "$deny")" 2>/dev/null; then
    ok "$deny lists allervers-visitor"
  else
    act "add allervers-visitor to $deny" append_line "$deny" allervers-visitor
  fi
}
append_line() { mkdir -p "$(dirname "$(R "$1")")" && printf '%s\n' "$2" >> "$(R "$1")"; }
if [ "$KIOSK" -eq 1 ]; then
  deny_scheduler /etc/cron.allow /etc/cron.deny
  deny_scheduler /etc/at.allow /etc/at.deny
fi

# --- 3. directories ---------------------------------------------------------------------------------------------
ensure_dir /opt/allervers                  0755 root root
ensure_dir /etc/allervers                  0750 root allervers
ensure_dir /var/lib/allervers              0750 allervers allervers
ensure_dir /srv/allervers                  0755 root root
ensure_dir "$SESSIONS_DIR"                 0755 root root   # mount point: the tmpfs brings its own mode
ensure_dir /etc/chromium/policies/managed  0775 root allervers  # the controller writes each session's policy

# --- 4. the venv ------------------------------------------------------------------------------------------------
if skipped venv; then
  note "venv: skipped (--skip venv)"
else
  venv=/opt/allervers/venv
  if [ -x "$(R $venv/bin/python)" ]; then
    ok "venv $venv exists"
  else
    act "create the venv $venv" python3 -m venv "$(R $venv)"
  fi
  stamp=$(source_stamp)
  if [ -x "$(R $venv/bin/allervers)" ] && [ "$(cat "$(R $venv/.allervers-source)" 2>/dev/null)" = "$stamp" ]; then
    ok "allervers in the venv is this source ($stamp)"
  else
    act "pip install $SRC into $venv ($stamp)" pip_install "$venv" "$stamp"
  fi
fi
ensure_file "$SRC/README.md" /opt/allervers/README.md 0644
# `allervers status`, `doctor`, `alarms`... as the README writes them (the CLI reads /etc/allervers/allervers.toml).
ensure_link /opt/allervers/venv/bin/allervers /usr/local/bin/allervers

# --- 5. config (never overwritten) ------------------------------------------------------------------------------
if [ -e "$(R /etc/allervers/allervers.toml)" ]; then
  ok "/etc/allervers/allervers.toml kept (yours: never overwritten)"
else
  act "create /etc/allervers/allervers.toml from config/example-bus.toml (edit it: vehicle id, devices, broker)" \
    install_owned "$SRC/config/example-bus.toml" /etc/allervers/allervers.toml 0640 root allervers
fi
if live_root && [ -x "$(R /opt/allervers/venv/bin/allervers)" ] && [ -e /etc/allervers/allervers.toml ]; then
  /opt/allervers/venv/bin/allervers config check /etc/allervers/allervers.toml \
    || warn "the config has an error (above): fix it, then: systemctl restart allervers"
fi

# --- 6. units, journald, udev -----------------------------------------------------------------------------------
UNITS_CHANGED=0
unit_files=("${UNIT_FILES[@]}")
if [ "$KIOSK" -eq 0 ]; then
  for unit in "${KIOSK_UNITS[@]}"; do unit_files=("${unit_files[@]/$unit/}"); done
fi
for unit in "${unit_files[@]}"; do
  [ -n "$unit" ] || continue
  ensure_file "$SRC/systemd/$unit" "/etc/systemd/system/$unit" 0644
  [ "$LAST" -eq 0 ] || UNITS_CHANGED=1
done
if [ "$KIOSK" -eq 1 ]; then
  ensure_file "$SRC/systemd/allervers.service.d/kiosk.conf" "$KIOSK_DROPIN" 0644
  [ "$LAST" -eq 0 ] || UNITS_CHANGED=1
elif [ -e "$(R "$KIOSK_DROPIN")" ]; then
  act "remove $KIOSK_DROPIN (--no-kiosk: the controller gets its strict sandbox back)" rm -f "$(R "$KIOSK_DROPIN")"
  UNITS_CHANGED=1
fi
if [ "$RO_ROOT" -eq 1 ]; then
  ensure_file "$SRC/systemd/$STATE_MOUNT" "/etc/systemd/system/$STATE_MOUNT" 0644
  [ "$LAST" -eq 0 ] || UNITS_CHANGED=1
fi
ensure_file "$SRC/systemd/journald.conf.d/allervers.conf" /etc/systemd/journald.conf.d/allervers.conf 0644
JOURNALD_CHANGED=$LAST
UDEV_CHANGED=0
if [ -e "$(R "$UDEV_RULES")" ]; then
  if cmp -s "$SRC/systemd/udev/78-allervers.rules" "$(R "$UDEV_RULES")"; then
    ok "$UDEV_RULES up to date"
  else
    note "$UDEV_RULES kept: it differs from systemd/udev/78-allervers.rules (your adapters' ids)"
  fi
else
  act "install $UDEV_RULES (/dev/allervers-modem, /dev/allervers-rs485; ModemManager ignores them)" \
    install_owned "$SRC/systemd/udev/78-allervers.rules" "$UDEV_RULES" 0644 root root
  UDEV_CHANGED=1
fi

if live_root && systemd_running; then
  [ "$UNITS_CHANGED" -eq 0 ] || act "systemctl daemon-reload" systemctl daemon-reload
  [ "$JOURNALD_CHANGED" -eq 0 ] || act "restart journald (new size cap)" systemctl restart systemd-journald
  [ "$UDEV_CHANGED" -eq 0 ] || act "reload udev rules and re-trigger serial devices" udev_reload
fi

enable_units=("${ENABLE_UNITS[@]}")
[ "$KIOSK" -eq 1 ] || enable_units=(allervers.service "allervers-console@tty2.service")
[ "$RO_ROOT" -eq 0 ] || enable_units+=("$STATE_MOUNT")
for unit in "${enable_units[@]}"; do
  if [ "$(sc is-enabled "$unit" 2>/dev/null)" = "enabled" ]; then
    ok "$unit enabled"
  else
    act "enable $unit" sc enable "$unit"
  fi
done

# --- 7. read-only root (optional) -------------------------------------------------------------------------------
if [ "$RO_ROOT" -eq 1 ]; then
  if ! live_root; then
    note "overlay root: raspi-config is run only on the Pi itself (not under --root)"
  elif ! command -v raspi-config >/dev/null; then
    warn "overlay root: raspi-config not found (Raspberry Pi OS only): root stays writable"
  elif ! blkid -L allervers-data >/dev/null 2>&1; then
    warn "overlay root: no partition labelled allervers-data for the state; make one (ext4) and run again"
  elif [ "$(raspi-config nonint get_overlay_conf)" = "0" ]; then
    ok "overlay root enabled"
  else
    act "enable the overlay (read-only) root with raspi-config; reboot to apply" raspi-config nonint enable_overlayfs
  fi
fi

# --- 8. (re)start ---------------------------------------------------------------------------------------------------
if live_root && systemd_running; then
  for unit in allervers.service "allervers-console@tty2.service" "$([ "$KIOSK" -eq 1 ] && echo allervers-kiosk.service)"; do
    [ -n "$unit" ] || continue
    if [ "$CHANGES" -gt 0 ] && systemctl is-active --quiet "$unit"; then
      act "restart $unit (new version or units)" systemctl restart "$unit"
    elif ! systemctl is-active --quiet "$unit"; then
      act "start $unit" systemctl start "$unit"
    fi
  done
fi

summary
