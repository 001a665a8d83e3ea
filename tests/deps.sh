#!/usr/bin/env bash
# Installs what the build and the tests need on Debian 12, then fetches the kernel fixtures.
set -euo pipefail
sudo=""
[ "$(id -u)" = 0 ] || sudo=sudo
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -q
# qemu-system-x86, busybox-static and cpio: the VM test (tests/vm) boots Debian's kernel; the
# libraries after them are what its unpacked systemd-udevd links against (the dracut test puts
# that udevd in its image too, as dracut requires); lintian checks the Debian package;
# e2fsprogs makes the root file system the initramfs-tools test boots into; shellcheck reads
# every shell script (tests/shell_scripts.rs); debhelper (with dpkg-dev) builds the package
# from debian/ as a packager would.
$sudo apt-get install -y -q --no-install-recommends gcc libc6-dev kmod libkmod-dev libudev-dev pkg-config time \
    qemu-system-x86 busybox-static cpio libacl1 libblkid1 libcap2 libselinux1 libkmod2 libsystemd-shared \
    lintian e2fsprogs shellcheck debhelper
"$(dirname "$0")/fixtures/kernels.sh"
"$(dirname "$0")/fixtures/udev.sh"
# The real initramfs generators, unpacked, for the tests that build images with them.
"$(dirname "$0")/fixtures/unpack-debs.sh" initramfs-tools initramfs-tools-core klibc-utils libklibc
"$(dirname "$0")/fixtures/unpack-debs.sh" dracut dracut-core
# systemd-analyze, to verify the units (tests/systemd_units.rs).
"$(dirname "$0")/fixtures/unpack-debs.sh" systemd systemd
# openrc-run, to read the OpenRC service (tests/openrc_service.rs).
"$(dirname "$0")/fixtures/unpack-debs.sh" openrc openrc libeinfo1 librc1
# runit's and s6's supervisors, to run the service directories (tests/supervised_service.rs).
"$(dirname "$0")/fixtures/unpack-debs.sh" supervisors runit s6 libs6-2.11 libskarnet2.13 libexecline2.9
# The real-system test's Debian 12 and 13 root file systems, made with mmdebstrap from Debian's
# archive and cached (tests/system/make-rootfs.sh; about 800 MiB, 5 minutes the first time).
$sudo apt-get install -y -q --no-install-recommends mmdebstrap
"$(dirname "$0")/system/make-rootfs.sh" debian12-systemd debian13-systemd debian13-openrc >/dev/null
