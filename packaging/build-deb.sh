#!/bin/sh
# Builds the Debian package from the static binary and the files in packaging/, with dpkg-deb
# alone (no debhelper, no cargo-deb): what is installed where is all in this file.
#   packaging/build-deb.sh [OUTDIR]     default OUTDIR: target/debian
#
# Nothing is enabled on installation: modaliasd and systemd-udevd would both own the uevent
# socket (see packaging/README.md). The dracut module is opt-in by its own check(); the other
# init systems' files and the initramfs-tools hook are under /usr/share/modaliasd to copy.
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
outdir=${1:-$here/target/debian}
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' "$here/Cargo.toml" | head -n 1)
arch=$(dpkg --print-architecture)
stage=$(mktemp -d)
chmod 755 "$stage"
trap 'rm -rf "$stage"' EXIT
p=$here/packaging

"$p/build-static.sh" "$stage/usr/sbin/modaliasd" >/dev/null

install -D -m 644 "$p/systemd/modaliasd.service" "$stage/lib/systemd/system/modaliasd.service"
install -D -m 644 "$p/systemd/modaliasd.socket" "$stage/lib/systemd/system/modaliasd.socket"
for rules in "$here"/rules.d/*.rules; do
    install -D -m 644 "$rules" "$stage/usr/lib/modaliasd/rules.d/$(basename "$rules")"
done
install -D -m 755 "$p/dracut/99modaliasd/module-setup.sh" \
    "$stage/usr/lib/dracut/modules.d/99modaliasd/module-setup.sh"
for f in modaliasd-coldplug.sh modaliasd-stop.sh; do
    install -D -m 755 "$p/dracut/99modaliasd/$f" "$stage/usr/lib/dracut/modules.d/99modaliasd/$f"
done
share=$stage/usr/share/modaliasd
for f in initramfs-tools/hooks/modaliasd initramfs-tools/scripts/init-top/modaliasd \
    initramfs-tools/scripts/init-bottom/modaliasd \
    mkinitcpio/install/modaliasd mkinitcpio/hooks/modaliasd openrc/modaliasd \
    runit/modaliasd/run s6/modaliasd/run; do
    install -D -m 755 "$p/$f" "$share/$f"
done
install -D -m 644 "$p/s6/modaliasd/type" "$share/s6/modaliasd/type"
# Keep the index fresh for every kernel installed later.
install -D -m 755 /dev/stdin "$stage/etc/kernel/postinst.d/modaliasd" <<'HOOK'
#!/bin/sh
# Compiles modaliasd's alias index for a newly installed kernel ($1 is its release).
[ -x /usr/sbin/modaliasd ] || exit 0
[ -f "/lib/modules/$1/modules.dep" ] || exit 0
/usr/sbin/modaliasd -q compile --kver "$1" || true
HOOK
install -d "$stage/usr/share/man/man8"
gzip -9n < "$p/modaliasd.8" > "$stage/usr/share/man/man8/modaliasd.8.gz"
install -d "$stage/usr/share/doc/modaliasd"
gzip -9n < "$here/README.md" > "$stage/usr/share/doc/modaliasd/README.md.gz"
gzip -9n < "$p/README.md" > "$stage/usr/share/doc/modaliasd/packaging.md.gz"
cat > "$stage/usr/share/doc/modaliasd/copyright" <<'COPYRIGHT'
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: modaliasd
Files: *
License: MIT or Apache-2.0
COPYRIGHT

install -d "$stage/DEBIAN"
printf '/etc/kernel/postinst.d/modaliasd\n' > "$stage/DEBIAN/conffiles"
cat > "$stage/DEBIAN/postinst" <<'POSTINST'
#!/bin/sh
set -e
if [ "$1" = configure ]; then
    for dir in /lib/modules/*/; do
        [ -f "${dir}modules.dep" ] || continue
        /usr/sbin/modaliasd -q compile --kver "$(basename "$dir")" || true
    done
fi
POSTINST
chmod 755 "$stage/DEBIAN/postinst"
size=$(du -sk --exclude=DEBIAN "$stage" | cut -f1)
cat > "$stage/DEBIAN/control" <<CONTROL
Package: modaliasd
Version: $version
Architecture: $arch
Maintainer: modaliasd developers <modaliasd@invalid>
Installed-Size: $size
Section: admin
Priority: optional
Recommends: kmod
Description: kernel hotplug daemon and module loader
 Loads the drivers for kernel devices as they appear: matches each device's
 MODALIAS against modules.alias exactly as libkmod does and loads the modules
 with modprobe's semantics, in parallel, each once. Replaces the module-loading
 half of udev at boot, in an initramfs, and for replays of recorded events.
CONTROL
mkdir -p "$outdir"
deb=$outdir/modaliasd_${version}_${arch}.deb
dpkg-deb --root-owner-group -Zxz --build "$stage" "$deb" >/dev/null
echo "$deb"
