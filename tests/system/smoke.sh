#!/bin/bash
# Boots stock images (no modaliasd) once each and checks that the report comes back and the
# machine powers off by itself:
#
#   smoke.sh [--work DIR] [BOOT-OPTION...] NAME...
#
# NAME: debian12-systemd, debian13-systemd, debian13-openrc (booted with the kernel and initrd
# of debian13-systemd). WORK (default ${TMPDIR:-/tmp}/system-smoke) gets NAME/root (the unpacked
# tree), NAME/serial.log and NAME/report.txt. BOOT-OPTIONs (--scsi, --append ARGS, --timeout S,
# ...) go to boot.sh. Prints one summary line per image; exits 1 if any failed.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
work=${TMPDIR:-/tmp}/system-smoke
boot_args=()
while [ $# -gt 0 ]; do
    case $1 in
    --work) work=$2 && shift 2 ;;
    --scsi | --keep) boot_args+=("$1") && shift ;;
    --append | --timeout | --memory | --smp | --root) boot_args+=("$1" "$2") && shift 2 ;;
    -*) echo "smoke.sh: unknown option $1" >&2 && exit 2 ;;
    *) break ;;
    esac
done
[ $# -ge 1 ] || {
    echo "usage: smoke.sh [--work DIR] [BOOT-OPTION...] NAME..." >&2
    exit 2
}

failed=0
for name in "$@"; do
    dir=$work/$name
    rm -rf "$dir"
    mkdir -p "$dir"
    "$here/unpack.sh" "$name" "$dir/root"
    "$here/install-probe.sh" "$dir/root"
    extra=() boot=""
    case $name in
    *-openrc)
        boot=$work/${name%-openrc}-systemd-boot
        rm -rf "$boot"
        "$here/unpack.sh" "${name%-openrc}-systemd" "$boot" ./boot
        extra=(--boot-from "$boot")
        ;;
    esac
    start=$(date +%s)
    status=0
    "$here/boot.sh" "${boot_args[@]}" "${extra[@]}" --work "$dir" "$dir/root" >/dev/null || status=$?
    wall=$(($(date +%s) - start))
    if "$here/report.sh" "$dir/serial.log" >"$dir/report.txt" && [ "$status" = 0 ]; then
        r() { "$here/report.sh" "$dir/serial.log" "$1"; }
        if [ "$(r init)" = systemd ]; then
            echo "smoke.sh: $name: ok, qemu ${wall} s; $(r system-state), multi-user.target after" \
                "$(r multi-user-target-s) s of userspace ($(r multi-user-target-since-boot-s) s since boot)," \
                "$(r modules) modules ($(r modules-at-running) when running), $(r device-units) device units," \
                "$(r failed-units) failed units, serial getty $(r serial-getty-ttyS0)"
        else
            echo "smoke.sh: $name: ok, qemu ${wall} s; $(r report-service) started at $(r service-start-s) s," \
                "$(r modules) modules ($(r modules-at-runlevel-done) at the end of runlevel 2), $(r crashed-services) crashed services," \
                "serial getty $(r serial-getty-ttyS0)"
        fi
    else
        echo "smoke.sh: $name: FAILED (boot.sh status $status, qemu ${wall} s; log $dir/serial.log)"
        failed=1
    fi
    rm -rf "$dir/root" "${boot:-}"
done
exit "$failed"
