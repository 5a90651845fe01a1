# shellcheck shell=bash
# Shared by install-pi.sh and uninstall-pi.sh: look at the real state, then act (or, with --dry-run, say so).
# Expects ROOT, DRY, SRC to be set by the caller.
# shellcheck disable=SC2034  # the settings below are read by the scripts that source this file

SESSIONS_DIR=/srv/allervers/sessions
UNIT_FILES=(allervers.service allervers-kiosk.service "allervers-console@.service" srv-allervers-sessions.mount
  allervers-session.socket "allervers-session@.service")
ENABLE_UNITS=(allervers.service srv-allervers-sessions.mount allervers-session.socket allervers-kiosk.service
  "allervers-console@tty2.service")
STATE_MOUNT=var-lib-allervers.mount
KIOSK_UNITS=(allervers-kiosk.service srv-allervers-sessions.mount allervers-session.socket "allervers-session@.service")
KIOSK_DROPIN=/etc/systemd/system/allervers.service.d/kiosk.conf
UDEV_RULES=/etc/udev/rules.d/78-allervers.rules
USERS=(allervers-console allervers-visitor allervers-kiosk allervers)

CHANGES=0
LAST=0  # 1 if the last ensure_* step changed (or would change) something

R() { printf '%s%s' "${ROOT%/}" "$1"; }
live_root() { [ "$(cd "$ROOT" && pwd -P)" = "/" ]; }
systemd_running() { [ -d /run/systemd/system ]; }
skipped() { [[ ${SKIP:-,} == *",$1,"* ]]; }

ok() { echo "  ok     $1"; }
note() { echo "  note   $1"; }
warn() { echo "  WARN   $1" >&2; }
die() { echo "${0##*/}: $1" >&2; exit 1; }

# act DESCRIPTION COMMAND...: the one place where anything changes.
act() {
  local what=$1; shift
  CHANGES=$((CHANGES + 1))
  if [ "$DRY" -eq 1 ]; then
    echo "  would  $what"
  else
    echo "  doing  $what"
    "$@"
  fi
}

summary() {
  if [ "$CHANGES" -eq 0 ]; then
    echo "nothing to do: already in place"
  elif [ "$DRY" -eq 1 ]; then
    echo "$CHANGES action(s) would be taken (dry run: nothing changed)"
  else
    echo "$CHANGES action(s) taken"
  fi
}

preflight() {
  [ -d "$ROOT" ] || die "--root $ROOT: no such directory"
  if [ "$DRY" -eq 0 ] && [ "$(id -u)" -ne 0 ]; then
    die "run as root (sudo $0), or look first with --dry-run"
  fi
  if live_root && [ -r /etc/os-release ]; then
    # shellcheck disable=SC1091
    codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
    [ "$codename" = "bookworm" ] || warn "made for Raspberry Pi OS bookworm, this is '${codename:-unknown}'"
    [ "$(uname -m)" = "aarch64" ] || warn "made for a 64-bit Pi 4/5 (aarch64), this is $(uname -m)"
  fi
}

# --- users and groups, in ROOT's own /etc/passwd and /etc/group -------------------------------------------------

root_opt() { if live_root; then :; else printf '%s\n' --root "$ROOT"; fi; }
user_exists() { grep -q "^$1:" "$(R /etc/passwd)" 2>/dev/null; }
group_exists() { grep -q "^$1:" "$(R /etc/group)" 2>/dev/null; }
uid_of() { awk -F: -v n="$1" '$1 == n { print $3 }' "$(R /etc/passwd)"; }
gid_of() { awk -F: -v n="$1" '$1 == n { print $3 }' "$(R /etc/group)"; }
in_group() { awk -F: -v u="$1" -v g="$2" '$1 == g { n = split($4, m, ","); for (i = 1; i <= n; i++) if (m[i] == u) f = 1 } END { exit !f }' "$(R /etc/group)"; }

with_root() {  # with_root TOOL ARGS...: run a shadow tool (useradd, usermod, ...) on ROOT's files
  local tool=$1; shift
  local opts=()
  mapfile -t opts < <(root_opt)
  "$tool" "${opts[@]}" "$@"
}

ensure_group() {
  if group_exists "$1"; then ok "group $1"; else act "create group $1" with_root groupadd --system "$1"; fi
}

ensure_user() {  # ensure_user NAME HOME COMMENT GROUPS(comma-separated, may be empty)
  local name=$1 home=$2 comment=$3 groups=$4
  if user_exists "$name"; then
    ok "user $name"
  else
    local extra=()
    [ -z "$groups" ] || extra=(--groups "$groups")
    act "create system user $name (home $home${groups:+, groups $groups})" \
      with_root useradd --system --no-create-home --home-dir "$home" --shell /usr/sbin/nologin --user-group \
      --comment "$comment" "${extra[@]}" "$name"
    return 0
  fi
  local g
  for g in ${groups//,/ }; do
    if in_group "$name" "$g"; then ok "user $name in group $g"; else act "add $name to group $g" with_root usermod -a -G "$g" "$name"; fi
  done
}

# --- files and directories ----------------------------------------------------------------------------------------

same_mode() { [ "$(stat -c %a "$1")" = "$(printf '%o' "$((8#$2))")" ]; }

ensure_dir() {  # ensure_dir PATH MODE USER GROUP
  local path=$1 mode=$2 user=$3 group=$4 p
  p=$(R "$path")
  if [ -d "$p" ] && same_mode "$p" "$mode" && [ "$(stat -c %u:%g "$p")" = "$(uid_of "$user"):$(gid_of "$group")" ]; then
    ok "$path ($mode $user:$group)"
  else
    act "$([ -d "$p" ] && echo fix || echo create) $path ($mode $user:$group)" make_dir "$path" "$mode" "$user" "$group"
  fi
}

make_dir() {
  local p
  p=$(R "$1")
  mkdir -p "$p"
  chown "$(uid_of "$3"):$(gid_of "$4")" "$p"
  chmod "$2" "$p"
}

ensure_file() {  # ensure_file SOURCE DEST MODE: copy when missing or different (sets LAST)
  local src=$1 dst=$2 mode=$3 p
  p=$(R "$dst")
  if [ -f "$p" ] && cmp -s "$src" "$p" && same_mode "$p" "$mode"; then
    ok "$dst up to date"
    LAST=0
  else
    act "$([ -e "$p" ] && echo update || echo install) $dst" install -D -m "$mode" "$src" "$p"
    LAST=1
  fi
}

ensure_link() {  # ensure_link TARGET LINK: LINK is a symlink to TARGET (an absolute path on the Pi)
  local target=$1 link=$2 p
  p=$(R "$link")
  if [ -L "$p" ] && [ "$(readlink "$p")" = "$target" ]; then
    ok "$link -> $target"
  else
    act "$([ -e "$p" ] || [ -L "$p" ] && echo replace || echo link) $link -> $target" make_link "$target" "$link"
  fi
}

make_link() {
  local p
  p=$(R "$2")
  mkdir -p "$(dirname "$p")"
  ln -sfn "$1" "$p"
}

install_owned() {  # install_owned SOURCE DEST MODE USER GROUP
  install -D -m "$3" -o "$(uid_of "$4")" -g "$(gid_of "$5")" "$1" "$(R "$2")"
}

# --- systemd, apt, pip, udev ----------------------------------------------------------------------------------------

sc() { if live_root; then systemctl "$@"; else systemctl --root="$ROOT" "$@"; fi; }

apt_install() {
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@"
}

source_stamp() {  # a hash of what pip installs: changes exactly when the package would
  local version
  version=$(sed -n -E 's/^version = "([^"]+)"/\1/p' "$SRC/pyproject.toml" | head -n1)
  printf '%s+%s' "$version" "$(cd "$SRC" && find firmware_host drivers kiosk -type f \
    \( -name '*.py' -o -name '*.tcss' -o -name '*.toml' -o -name '*.json' \) -not -path '*/__pycache__/*' \
    -print0 | sort -z | xargs -0 sha256sum | cat - pyproject.toml | sha256sum | cut -c1-12)"
}

pip_install() {  # pip_install VENV STAMP
  local venv
  venv=$(R "$1")
  local target="$SRC"
  # lgpio (the Pi 4/5 GPIO backend) only where there is a Pi to drive.
  if live_root && [ "$(uname -m)" = "aarch64" ]; then target="${SRC}[pi]"; fi
  # shellcheck disable=SC2086  # ALLERVERS_PIP_OPTS is a list of options on purpose
  "$venv/bin/pip" install --disable-pip-version-check -q ${ALLERVERS_PIP_OPTS:-} "$target"
  printf '%s\n' "$2" > "$venv/.allervers-source"
  live_root || note "a venv is not relocatable: $1 works at $venv; for an image, run this script inside it"
}

udev_reload() {
  udevadm control --reload-rules
  udevadm trigger --subsystem-match=tty --action=change
}
