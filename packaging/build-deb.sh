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
    initramfs-tools/scripts/init-bottom/modaliasd openrc/modaliasd \
    runit/modaliasd/run s6/modaliasd/run; do
    install -D -m 755 "$p/$f" "$share/$f"
done
# mkinitcpio sources its install and hooks files (as its own are, mode 644).
for f in mkinitcpio/install/modaliasd mkinitcpio/hooks/modaliasd; do
    install -D -m 644 "$p/$f" "$share/$f"
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
Copyright: 2026 the modaliasd developers
License: MIT or Apache-2.0
 On Debian systems the Apache License 2.0 is in /usr/share/common-licenses/Apache-2.0.
 The MIT license: permission is hereby granted, free of charge, to any person
 obtaining a copy of this software and associated documentation files, to deal in
 the software without restriction, subject to including the copyright notice and
 this permission notice in all copies; the software is provided "as is", without
 warranty of any kind.
COPYRIGHT
# The maintainer, as Debian's tools take it (DEBFULLNAME, DEBEMAIL); the default is a
# placeholder in the reserved .invalid domain, for a packager to replace.
maintainer="${DEBFULLNAME:-modaliasd developers} <${DEBEMAIL:-maintainers@modaliasd.invalid}>"
# A native package's changelog, dated like the build (SOURCE_DATE_EPOCH when set, for a
# reproducible package).
date=$(date -R -u -d "@${SOURCE_DATE_EPOCH:-$(date +%s)}")
gzip -9n > "$stage/usr/share/doc/modaliasd/changelog.gz" <<CHANGELOG
modaliasd ($version) unstable; urgency=medium

  * Built from the modaliasd sources by packaging/build-deb.sh.

 -- $maintainer  $date
CHANGELOG
# lintian's view of two files, explained.
install -D -m 644 /dev/stdin "$stage/usr/share/lintian/overrides/modaliasd" <<'OVERRIDES'
# A static PIE: an ET_DYN file with no program interpreter, which lintian takes for a library.
modaliasd: shared-library-lacks-prerequisites [usr/sbin/modaliasd]
# The OpenRC service, to copy to /etc/init.d: openrc-run is its interpreter by design.
modaliasd: unusual-interpreter /sbin/openrc-run [usr/share/modaliasd/openrc/modaliasd]
# mkinitcpio's files, to copy to an Arch-style system: mkinitcpio sources them (its own are
# mode 644), and /usr/bin/ash is the busybox of the initramfs it builds.
modaliasd: script-not-executable [usr/share/modaliasd/mkinitcpio/*]
modaliasd: wrong-path-for-interpreter /usr/bin/ash != /bin/ash [usr/share/modaliasd/mkinitcpio/hooks/modaliasd]
OVERRIDES

install -d "$stage/DEBIAN"
printf '/etc/kernel/postinst.d/modaliasd\n' > "$stage/DEBIAN/conffiles"
cat > "$stage/DEBIAN/postinst" <<'POSTINST'
#!/bin/sh
set -e
if [ "$1" = configure ]; then
    for dir in /lib/modules/*/; do
        [ -f "${dir}modules.dep" ] || continue
        modaliasd -q compile --kver "$(basename "$dir")" || true
    done
fi
POSTINST
chmod 755 "$stage/DEBIAN/postinst"
(cd "$stage" && find . -type f ! -path './DEBIAN/*' -printf '%P\0' | LC_ALL=C sort -z \
    | xargs -0 md5sum) > "$stage/DEBIAN/md5sums"
size=$(du -sk --exclude=DEBIAN "$stage" | cut -f1)
cat > "$stage/DEBIAN/control" <<CONTROL
Package: modaliasd
Version: $version
Architecture: $arch
Maintainer: $maintainer
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
