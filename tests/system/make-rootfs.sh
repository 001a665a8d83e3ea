#!/bin/bash
# Builds (once) a minimal Debian root file system for the real-system test, as a tarball:
#
#   make-rootfs.sh NAME...        NAME: debian12-systemd | debian13-systemd | debian13-openrc
#
# The tarball goes to $MODALIASD_CACHE/system/NAME.tar (MODALIASD_CACHE defaults to
# ${XDG_CACHE_HOME:-$HOME/.cache}/modaliasd); one that is already there is kept, so delete it to
# rebuild. MODALIASD_MIRROR overrides the Debian mirror (default http://deb.debian.org/debian;
# the security archive is MODALIASD_SECURITY_MIRROR, default http://deb.debian.org/debian-security).
# Prints the tarball's path for each NAME. Runs as root (mmdebstrap --mode=root).
#
# debian12-systemd  bookworm (+updates, +security), systemd-sysv, udev, kmod, initramfs-tools and
#                   the newest 6.12 kernel bookworm has (linux-image-6.12.N+deb12-amd64, signed if
#                   there is one, else -unsigned), chosen inside the image from its own apt lists.
# debian13-systemd  trixie (+updates, +security), the same packages with linux-image-amd64.
# debian13-openrc   trixie, openrc + sysvinit-core as init, kmod, and the very kernel package of
#                   debian13-systemd (built first if needed), without udev: initramfs-tools needs
#                   udev, so the image has no initramfs tool (a dummy package provides
#                   linux-initramfs-tool) and no initrd; boot it with boot.sh --boot-from the
#                   unpacked debian13-systemd, whose initrd is for the same kernel.
#
# Every image: minbase, no recommends, no docs/man pages/locales, hostname NAME, an /etc/fstab
# mounting LABEL=sysroot (the label boot.sh gives the disk) on /, an empty root password.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
cache=${MODALIASD_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/modaliasd}/system
mirror=${MODALIASD_MIRROR:-http://deb.debian.org/debian}
security=${MODALIASD_SECURITY_MIRROR:-http://deb.debian.org/debian-security}

die() {
    echo "make-rootfs.sh: $*" >&2
    exit 1
}

# The kernel versions (KVER of /boot/vmlinuz-KVER) in a root file system tarball.
tar_kernels() {
    tar -tf "$1" | sed -n 's|^\./boot/vmlinuz-||p; s|^boot/vmlinuz-||p' | sort -V
}

# --- customize hook: runs inside mmdebstrap with the chroot's path as $2 -------------------
customize() {
    root=$1 name=$2
    in_root() { chroot "$root" env DEBIAN_FRONTEND=noninteractive "$@"; }

    if [ "$name" = debian12-systemd ]; then
        # The newest 6.12 kernel of bookworm (it comes from bookworm-security or -updates).
        names=$(in_root apt-cache search --names-only '^linux-image-6\.12\.[0-9]+\+deb12-amd64(-unsigned)?$' |
            cut -d' ' -f1)
        newest=$(printf '%s\n' "$names" | sed -n 's/^linux-image-\(6\.12\.[0-9]*\)+deb12-amd64.*/\1/p' |
            sort -V | tail -n 1)
        [ -n "$newest" ] || die "bookworm has no linux-image-6.12.N+deb12-amd64"
        package=linux-image-$newest+deb12-amd64
        printf '%s\n' "$names" | grep -qx "$package" || package=$package-unsigned
        echo "make-rootfs.sh: $name: kernel package $package" >&2
        in_root apt-get install -y --no-install-recommends "$package"
    fi
    if [ "$name" = debian13-openrc ]; then
        # A package that stands for an initramfs tool, so that the kernel does not bring
        # initramfs-tools and with it udev; then the kernel of debian13-systemd.
        mkdir -p "$root/tmp/no-initramfs/DEBIAN"
        cat >"$root/tmp/no-initramfs/DEBIAN/control" <<'EOF'
Package: system-test-no-initramfs
Version: 1.0
Architecture: all
Maintainer: modaliasd system test <root@localhost>
Provides: linux-initramfs-tool
Priority: optional
Section: misc
Description: stands for an initramfs tool in the system test's OpenRC image
 That image has no udev, which every initramfs tool of Debian needs; it boots with the
 initrd of the systemd image made for the same kernel.
EOF
        in_root dpkg-deb --root-owner-group -b /tmp/no-initramfs /tmp/no-initramfs.deb >/dev/null
        in_root dpkg -i /tmp/no-initramfs.deb
        rm -rf "$root/tmp/no-initramfs" "$root/tmp/no-initramfs.deb"
        in_root apt-get install -y --no-install-recommends "linux-image-${MAKE_ROOTFS_KVER:?}"
    fi

    echo "$name" >"$root/etc/hostname"
    printf '127.0.0.1\tlocalhost\n127.0.1.1\t%s\n::1\tlocalhost ip6-localhost ip6-loopback\n' \
        "$name" >"$root/etc/hosts"
    printf '# boot.sh labels the disk it makes "sysroot".\nLABEL=sysroot\t/\text4\trw,errors=remount-ro\t0\t0\n' \
        >"$root/etc/fstab"
    in_root passwd --delete root >/dev/null

    kvers=$(find "$root/boot" -maxdepth 1 -name 'vmlinuz-*' | sed 's|.*/vmlinuz-||' | sort -V)
    [ -n "$kvers" ] || die "$name: no /boot/vmlinuz-*"
    case $name in
    *-systemd)
        for kver in $kvers; do
            [ -s "$root/boot/initrd.img-$kver" ] || in_root update-initramfs -c -k "$kver"
            [ -s "$root/boot/initrd.img-$kver" ] || die "$name: no /boot/initrd.img-$kver"
        done
        ;;
    *-openrc)
        # sysvinit's inittab has the serial getty commented out.
        grep -q '^T0:' "$root/etc/inittab" ||
            echo 'T0:2345:respawn:/sbin/getty -L 115200 ttyS0 vt102' >>"$root/etc/inittab"
        # shellcheck disable=SC2016 # a dpkg-query format
        if in_root dpkg-query -W -f '${Status}\n' udev systemd 2>/dev/null | grep -q ' installed$'; then
            die "$name: udev or systemd is installed"
        fi
        for f in usr/lib/systemd/systemd-udevd lib/systemd/systemd-udevd bin/udevadm usr/bin/udevadm; do
            [ ! -e "$root/$f" ] || die "$name: /$f exists"
        done
        ;;
    esac
}

if [ "${1:-}" = --customize ]; then
    customize "$2" "$3"
    exit 0
fi

# --- the build ----------------------------------------------------------------------------
[ $# -ge 1 ] || die "usage: make-rootfs.sh NAME... (debian12-systemd, debian13-systemd, debian13-openrc)"
[ "$(id -u)" = 0 ] || die "must run as root (mmdebstrap --mode=root)"

if ! command -v mmdebstrap >/dev/null; then
    if ! apt-get install -y --no-install-recommends mmdebstrap; then
        apt-get update
        apt-get install -y --no-install-recommends mmdebstrap
    fi
fi

build() {
    name=$1
    out=$cache/$name.tar
    if [ -s "$out" ] && tar -tf "$out" >/dev/null 2>&1; then
        echo "$out"
        return
    fi
    common="systemd-sysv,udev,kmod,initramfs-tools"
    extra="" kver=""
    case $name in
    debian12-systemd)
        suite=bookworm include=$common
        ;;
    debian13-systemd)
        suite=trixie include=$common,linux-image-amd64
        ;;
    debian13-openrc)
        suite=trixie
        systemd_tar=$("$here/make-rootfs.sh" debian13-systemd | tail -n 1)
        kver=$(tar_kernels "$systemd_tar" | tail -n 1)
        [ -n "$kver" ] || die "no kernel in $systemd_tar"
        include=openrc,sysvinit-core,kmod
        extra="(then kernel $kver of $systemd_tar)"
        ;;
    *) die "unknown image $name" ;;
    esac

    mkdir -p "$cache"
    tmp=$(mktemp "$cache/.$name.tar.XXXXXX")
    # shellcheck disable=SC2064 # expand now: the path is fixed
    trap "rm -f '$tmp'" EXIT
    echo "make-rootfs.sh: building $name: $suite, $include $extra" >&2
    start=$(date +%s)
    # shellcheck disable=SC2016 # the hook's sh expands them
    MAKE_ROOTFS_SELF=$here/make-rootfs.sh MAKE_ROOTFS_NAME=$name MAKE_ROOTFS_KVER=$kver mmdebstrap \
        --mode=root --variant=minbase --format=tar \
        --include="$include" \
        --dpkgopt='path-exclude=/usr/share/man/*' \
        --dpkgopt='path-exclude=/usr/share/locale/*' \
        --dpkgopt='path-include=/usr/share/locale/locale.alias' \
        --dpkgopt='path-exclude=/usr/share/doc/*' \
        --dpkgopt='path-include=/usr/share/doc/*/copyright' \
        --customize-hook='"$MAKE_ROOTFS_SELF" --customize "$1" "$MAKE_ROOTFS_NAME"' \
        "$suite" "$tmp" \
        "deb $mirror $suite main" \
        "deb $mirror $suite-updates main" \
        "deb $security $suite-security main"
    chmod 0644 "$tmp"
    mv "$tmp" "$out"
    trap - EXIT
    echo "make-rootfs.sh: $name: $(($(date +%s) - start)) s, $(du -m "$out" | cut -f1) MiB," \
        "kernel $(tar_kernels "$out" | tr '\n' ' ')" >&2
    echo "$out"
}

for name in "$@"; do
    build "$name"
done
