#!/bin/bash
# Boot time of a real Debian system with modaliasd against the same system with udevd alone:
# boots alternate (stock, with, stock, with, ...) so that a busy machine slows both alike, and
# the medians are printed. Root, qemu (software emulation) and tests/system's cached images.
#
#   benches/system_boot.sh DEB [ROUNDS] [IMAGE...]
#
# DEB: the package (dpkg-buildpackage -b -us -uc writes ../modaliasd_VERSION_ARCH.deb).
# ROUNDS: boots of each kind (default 3). IMAGE: debian12-systemd, debian13-systemd (default
# both). Per boot, from the system's own report: multi-user.target after userspace started and
# after the kernel started (systemd-analyze's figures), and how long modaliasd.service took to
# start (systemd-analyze blame: until its READY=1). docs/benchmarks.md keeps the results.
set -eu

[ $# -ge 1 ] || {
    echo "usage: benches/system_boot.sh DEB [ROUNDS] [IMAGE...]" >&2
    exit 2
}
deb=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
rounds=${2:-3}
shift $(($# < 2 ? $# : 2))
images=("$@")
[ ${#images[@]} -gt 0 ] || images=(debian12-systemd debian13-systemd)
sys=$(cd "$(dirname "$0")/../tests/system" && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/system-boot.XXXXXX")
trap 'rm -rf "$work"' EXIT

median() { sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else printf "%.3f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

for image in "${images[@]}"; do
    for kind in udevd modaliasd; do
        dir=$work/$image-$kind
        "$sys/unpack.sh" "$image" "$dir/root"
        if [ "$kind" = modaliasd ]; then
            cp "$deb" "$dir/root/tmp/modaliasd.deb"
            "$sys/chroot.sh" "$dir/root" sh -c \
                'dpkg -i /tmp/modaliasd.deb && rm /tmp/modaliasd.deb && update-initramfs -u' >/dev/null
        fi
        "$sys/install-probe.sh" "$dir/root" 2>/dev/null
        : >"$dir/results"
    done
    for round in $(seq "$rounds"); do
        for kind in udevd modaliasd; do
            dir=$work/$image-$kind
            log=$("$sys/boot.sh" --work "$dir/boot" "$dir/root")
            r() { "$sys/report.sh" "$log" "$1"; }
            held=$("$sys/report.sh" "$log" --section blame | awk '/ modaliasd\.service$/ { print $1 }')
            echo "$(r multi-user-target-s) $(r multi-user-target-since-boot-s) ${held:--}" >>"$dir/results"
            echo "$image $kind round $round: multi-user.target $(r multi-user-target-s) s userspace," \
                "$(r multi-user-target-since-boot-s) s since boot;" \
                "${held:+modaliasd.service started in $held (blame);}" \
                "$(r modules) modules, $(r failed-units) failed units" >&2
            rm -rf "${dir:?}/boot"
        done
    done
    for kind in udevd modaliasd; do
        f=$work/$image-$kind/results
        printf '%s %-9s median of %s: multi-user.target %s s userspace, %s s since boot\n' \
            "$image" "$kind" "$rounds" "$(cut -d' ' -f1 "$f" | median)" "$(cut -d' ' -f2 "$f" | median)"
    done
done
