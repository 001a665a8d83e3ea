#!/usr/bin/env bash
# Builds the VM test's initramfs: busybox as the shell, modaliasd, Debian's systemd-udevd with
# its rules (the reference), the whole module tree of one Debian kernel and a modprobe.d.
# One image serves every boot; the kernel command line's vmtest= picks who does the coldplug,
# so the loaders are compared on identical images.
#
#   build-initramfs.sh OUT KERNEL_ROOT MODALIASD UDEV_ROOT MODPROBE_D [OVERLAY]
#
# KERNEL_ROOT holds lib/modules/KVER (as unpacked by tests/fixtures/kernels.sh), UDEV_ROOT the
# unpacked udev package (tests/fixtures/udev.sh), MODPROBE_D a directory of .conf files.
# OVERLAY, a directory laid over lib/modules/KVER (X.ko replaces X.ko.xz), brings the broken
# modules of the failure test; the tree is then indexed again with depmod.
set -euo pipefail
out=$1 kernel_root=$2 modaliasd=$3 udev_root=$4 modprobe_d=$5 overlay=${6:-}
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
kver=$(ls "$kernel_root/lib/modules")
busybox=$(command -v busybox)
if ! (ldd "$busybox" 2>&1 || true) | grep -q 'not a dynamic executable'; then
    echo "build-initramfs.sh: $busybox is not static (install busybox-static)" >&2
    exit 1
fi

stage=$(mktemp -d "${TMPDIR:-/tmp}/vm-initramfs.XXXXXX")
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage"/{bin,sbin,etc,proc,sys,dev,run,tmp,lib/modules,lib/systemd,lib64,usr/lib/modaliasd}

install -m 0755 "$here/init" "$stage/init"
cp "$busybox" "$stage/bin/busybox"
# Every applet but the module tools: neither loader may fall back on busybox's modprobe.
for applet in $("$busybox" --list); do
    case $applet in
    busybox | modprobe | insmod | rmmod | lsmod | depmod | modinfo) ;;
    *) [ -e "$stage/bin/$applet" ] || ln -s busybox "$stage/bin/$applet" ;;
    esac
done

install -m 0755 "$modaliasd" "$stage/sbin/modaliasd"
cp -r "$repo/rules.d" "$stage/usr/lib/modaliasd/rules.d"

cp -a "$kernel_root/lib/modules/$kver" "$stage/lib/modules/"
if [ -n "$overlay" ]; then
    (cd "$overlay" && find . -name '*.ko' -print) | while read -r module; do
        rm -f "$stage/lib/modules/$kver/$module".*
        install -D -m 0644 "$overlay/$module" "$stage/lib/modules/$kver/$module"
    done
    depmod -b "$stage" "$kver"
fi
mkdir -p "$stage/etc/modprobe.d"
cp "$modprobe_d"/*.conf "$stage/etc/modprobe.d/"
# As the initramfs hooks do: the index is compiled when the image is built.
"$modaliasd" -q compile --root "$stage" --kver "$kver"

# systemd-udevd is udevadm under another name; it needs a few shared libraries.
cp "$udev_root/bin/udevadm" "$stage/bin/udevadm"
ln -s /bin/udevadm "$stage/lib/systemd/systemd-udevd"
cp -a "$udev_root/lib/udev" "$stage/lib/udev"
mkdir -p "$stage/etc/udev"
cp -a "$udev_root/etc/udev/." "$stage/etc/udev/"
libs=$(ldd "$udev_root/bin/udevadm" "$udev_root"/lib/udev/*_id 2>/dev/null | awk '/=> \// {print $3} /^\t\/lib64/ {print $1}' | sort -u)
if ldd "$udev_root/bin/udevadm" | grep -q 'not found'; then
    echo "build-initramfs.sh: udevadm needs libraries this machine lacks:" >&2
    ldd "$udev_root/bin/udevadm" | grep 'not found' >&2
    exit 1
fi
for lib in $libs; do
    mkdir -p "$stage$(dirname "$lib")"
    cp -L "$lib" "$stage$lib"
done

(cd "$stage" && find . -print0 | LC_ALL=C sort -z | cpio --quiet -o -0 -H newc -R 0:0) > "$out.tmp"
mv "$out.tmp" "$out"
echo "$out: $(du -h "$out" | cut -f1), kernel $kver" >&2
