#!/bin/sh
# Create (or reset) a broker user for the allervers fleet, with a random password.
#
#   create-user.sh PASSWD_FILE bus BUS_ID [OUT_DIR]      a bus: the user name is the vehicle id (the ACL needs it);
#                                                      writes OUT_DIR/BUS_ID.password (mode 600) to copy to the
#                                                      bus as /etc/allervers/mqtt-password
#   create-user.sh PASSWD_FILE office NAME [OUT_DIR]     a supervisor: add a `user NAME` block to allervers.acl
#                                                      (the example ACL has `office` and `homeassistant`)
#
# The password file is created if missing. Reload the broker afterwards: systemctl reload mosquitto
set -eu

usage() {
    echo "usage: $0 PASSWD_FILE bus|office NAME [OUT_DIR]" >&2
    exit 2
}

[ $# -ge 3 ] || usage
passwd_file=$1
role=$2
name=$3
out_dir=${4:-.}

case $role in
    bus)
        # Same rule as [vehicle] id in the bus config: it is also a topic level and the ACL's %u.
        if ! printf '%s' "$name" | grep -Eq '^[a-z0-9-]{1,32}$'; then
            echo "$0: bus id '$name' must match [a-z0-9-]{1,32} (the bus's [vehicle] id)" >&2
            exit 2
        fi
        ;;
    office)
        if ! printf '%s' "$name" | grep -Eq '^[A-Za-z0-9_.-]{1,64}$'; then
            echo "$0: user name '$name' must match [A-Za-z0-9_.-]{1,64}" >&2
            exit 2
        fi
        ;;
    *) usage ;;
esac

command -v mosquitto_passwd >/dev/null 2>&1 || {
    echo "$0: mosquitto_passwd not found (apt-get install mosquitto)" >&2
    exit 1
}

# 32 random characters from the kernel's generator. mosquitto_passwd -b takes it as an argument (its only
# non-interactive form): run this on the broker host, not on a shared machine.
password=$(head -c 48 /dev/urandom | base64 | tr -d '/+=\n' | cut -c 1-32)

if [ -f "$passwd_file" ]; then
    mosquitto_passwd -b "$passwd_file" "$name" "$password"
else
    mosquitto_passwd -c -b "$passwd_file" "$name" "$password"
fi

mkdir -p "$out_dir"
umask 077
printf '%s\n' "$password" >"$out_dir/$name.password"
echo "user $name ($role) set in $passwd_file; password in $out_dir/$name.password"
