#!/bin/bash
# Runs a command in an unpacked root file system, with /proc, /sys, /dev, /dev/pts and /run
# mounted for it, and undoes every mount afterwards, whether the command failed or not:
#
#   chroot.sh DIR CMD [ARG...]      e.g. chroot.sh "$root" update-initramfs -u -k all
#                                        chroot.sh "$root" dpkg -i /tmp/modaliasd.deb
#
# While the command runs, /usr/sbin/policy-rc.d answers 101 (unless the tree has its own), so
# that maintainer scripts do not start services inside the chroot. Exits with the command's
# status. Root only.
set -eu

die() {
    echo "chroot.sh: $*" >&2
    exit 1
}
[ $# -ge 2 ] || die "usage: chroot.sh DIR CMD [ARG...]"
root=$(cd "$1" && pwd)
shift
[ "$root" != / ] || die "refusing to work on /"
for d in proc sys dev; do
    [ -d "$root/$d" ] || die "$root is not a root file system (no /$d)"
done

mounted=()
policy=""
# shellcheck disable=SC2317 # run by the trap
cleanup() {
    local i
    for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do
        umount "${mounted[i]}" 2>/dev/null || umount -l "${mounted[i]}" ||
            echo "chroot.sh: could not unmount ${mounted[i]}" >&2
    done
    [ -z "$policy" ] || rm -f "$policy"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# mount_at TARGET MOUNT-ARGS...: mounts and remembers, for the cleanup.
mount_at() {
    local target=$root/$1
    shift
    mkdir -p "$target"
    mount "$@" "$target"
    mounted+=("$target")
}
mount_at proc -t proc proc
mount_at sys -t sysfs sysfs
mount_at dev --bind /dev
mount_at dev/pts --bind /dev/pts
mount_at run -t tmpfs -o mode=0755,nosuid,nodev tmpfs

if [ ! -e "$root/usr/sbin/policy-rc.d" ]; then
    policy=$root/usr/sbin/policy-rc.d
    printf '#!/bin/sh\n# chroot.sh: no service starts in the chroot\nexit 101\n' >"$policy"
    chmod 0755 "$policy"
fi

status=0
chroot "$root" /usr/bin/env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    DEBIAN_FRONTEND=noninteractive "$@" || status=$?
exit "$status"
