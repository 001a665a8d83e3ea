#!/bin/bash
# Boots an unpacked root file system under qemu (software emulation) and waits for it to power
# off by itself:
#
#   boot.sh [OPTION...] DIR
#
# DIR becomes a raw ext4 disk image labelled "sysroot" (mkfs.ext4 -d, the tree's size plus a
# margin), the root disk on virtio-blk (root=/dev/vda) or, with --scsi, on virtio-scsi
# (root=/dev/sda). The kernel and initrd are DIR's newest /boot/vmlinuz-KVER and
# /boot/initrd.img-KVER, or those of --boot-from DIR2 (the OpenRC image has no initrd: it boots
# with the one of the systemd image for the same kernel). DIR must hold /lib/modules/KVER.
# Kernel command line: root=... console=ttyS0 rw panic=-1, then every --append.
#
# The device set: e1000, intel-hda + hda-duplex (no audio backend), qemu-xhci with usb-tablet
# and usb-storage (a 16 MiB scratch image), virtio-rng-pci, ich9-ahci (no disk).
#
# Options:
#   --boot-from DIR2   kernel and initrd from DIR2/boot
#   --kernel FILE      kernel image (overrides --boot-from and DIR)
#   --initrd FILE      initrd (likewise)
#   --scsi             root disk on virtio-scsi-pci + scsi-hd instead of virtio-blk-pci (qemu
#                      then leaves out its default IDE CD-ROM: a scsi-hd disables it)
#   --root DEV         root= of the command line (default /dev/vda, /dev/sda with --scsi;
#                      LABEL=sysroot works too)
#   --append ARGS      more kernel command line (may be repeated)
#   --timeout SECONDS  kill qemu after that long (default 600); then boot.sh exits 124
#   --log FILE         serial log (default: WORK/serial.log)
#   --work DIR         where the disk images and the log go (default: a new directory under
#                      ${TMPDIR:-/tmp}); the disk images are deleted at the end unless --keep
#   --keep             keep the disk images
#   --memory MIB       guest memory (default 2048)
#   --smp N            guest CPUs (default 2)
#
# Prints the serial log's path on standard output (the log stays), a summary on standard
# error. Exit status: 0 when qemu ended by itself (the guest powered off; see the log for
# whether it reported), 124 on timeout, qemu's status when it failed.
set -eu

die() {
    echo "boot.sh: $*" >&2
    exit 2
}

boot_from="" kernel="" initrd="" scsi=0 rootdev="" append="" timeout=600 log="" work="" keep=0
memory=2048 smp=2
while [ $# -gt 0 ]; do
    case $1 in
    --boot-from) boot_from=$2 && shift 2 ;;
    --kernel) kernel=$2 && shift 2 ;;
    --initrd) initrd=$2 && shift 2 ;;
    --scsi) scsi=1 && shift ;;
    --root) rootdev=$2 && shift 2 ;;
    --append) append="$append $2" && shift 2 ;;
    --timeout) timeout=$2 && shift 2 ;;
    --log) log=$2 && shift 2 ;;
    --work) work=$2 && shift 2 ;;
    --keep) keep=1 && shift ;;
    --memory) memory=$2 && shift 2 ;;
    --smp) smp=$2 && shift 2 ;;
    --) shift && break ;;
    -*) die "unknown option $1" ;;
    *) break ;;
    esac
done
[ $# = 1 ] || die "usage: boot.sh [OPTION...] DIR"
root=$1
[ -d "$root/etc" ] || die "$root is not a root file system"
command -v qemu-system-x86_64 >/dev/null || die "no qemu-system-x86_64 (apt-get install qemu-system-x86)"
command -v mkfs.ext4 >/dev/null || die "no mkfs.ext4 (apt-get install e2fsprogs)"

# The kernel and initrd.
boot_dir=${boot_from:-$root}/boot
if [ -z "$kernel" ]; then
    kernel=$(find "$boot_dir" -maxdepth 1 -name 'vmlinuz-*' | sort -V | tail -n 1)
    [ -n "$kernel" ] || die "no vmlinuz-* in $boot_dir"
fi
kver=${kernel##*/vmlinuz-}
if [ -z "$initrd" ]; then
    initrd=$boot_dir/initrd.img-$kver
    [ -f "$initrd" ] || die "no $initrd (an image without one boots with --boot-from or --initrd)"
fi
[ -f "$kernel" ] || die "no kernel $kernel"
[ -f "$initrd" ] || die "no initrd $initrd"
[ "$kver" = "$kernel" ] || [ -d "$root/lib/modules/$kver" ] ||
    die "$root has no /lib/modules/$kver for kernel $kernel (rebuild the images together)"

if [ -z "$work" ]; then
    work=$(mktemp -d "${TMPDIR:-/tmp}/system-boot.XXXXXX")
fi
mkdir -p "$work"
work=$(cd "$work" && pwd)
log=${log:-$work/serial.log}
disk=$work/root.img stick=$work/stick.img
# Seconds since START (a `date +%s.%N`), to a tenth.
since() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f\n", b - a }'; }
# shellcheck disable=SC2317 # run by the trap
cleanup() {
    [ "$keep" = 1 ] || rm -f "$disk" "$stick"
}
trap cleanup EXIT

# The root disk: the tree's size, a quarter more and 256 MiB free.
used=$(du -sm "$root" | cut -f1)
size=$((used + used / 4 + 256))
rm -f "$disk"
truncate -s "${size}M" "$disk"
start=$(date +%s.%N)
mkfs.ext4 -q -F -L sysroot -d "$root" "$disk"
mkfs_s=$(since "$start")
rm -f "$stick"
truncate -s 16M "$stick"

if [ "$scsi" = 1 ]; then
    rootdev=${rootdev:-/dev/sda}
    disk_args=(-device "virtio-scsi-pci,id=scsi0" -device "scsi-hd,bus=scsi0.0,drive=root")
else
    rootdev=${rootdev:-/dev/vda}
    disk_args=(-device "virtio-blk-pci,drive=root")
fi
cmdline="root=$rootdev console=ttyS0 rw panic=-1$append"

rm -f "$log"
echo "boot.sh: $root ($used MiB, disk ${size} MiB in $mkfs_s s), kernel $kernel," \
    "initrd $initrd, cmdline: $cmdline" >&2
start=$(date +%s.%N)
status=0
timeout --kill-after=10 "$timeout" qemu-system-x86_64 \
    -M pc -accel tcg -m "$memory" -smp "$smp" \
    -nographic -monitor none -serial "file:$log" -no-reboot \
    -kernel "$kernel" -initrd "$initrd" -append "$cmdline" \
    -drive "file=$disk,format=raw,if=none,id=root,cache=unsafe" "${disk_args[@]}" \
    -nic none -device e1000 \
    -audiodev none,id=snd0 -device intel-hda -device hda-duplex,audiodev=snd0 \
    -device qemu-xhci,id=xhci -device usb-tablet,bus=xhci.0 \
    -drive "file=$stick,format=raw,if=none,id=stick" -device usb-storage,bus=xhci.0,drive=stick \
    -device virtio-rng-pci \
    -device ich9-ahci,id=ahci \
    </dev/null || status=$?
wall=$(since "$start")
case $status in
0) echo "boot.sh: qemu ended by itself after $wall s" >&2 ;;
124 | 137) echo "boot.sh: timeout: qemu killed after $wall s" >&2 && status=124 ;;
*) echo "boot.sh: qemu failed ($status) after $wall s" >&2 ;;
esac
echo "$log"
exit "$status"
