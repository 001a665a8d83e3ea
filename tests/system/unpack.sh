#!/bin/sh
# Unpacks the root file system tarball of NAME (make-rootfs.sh builds it if needed) into DIR,
# which must not exist or be empty:
#
#   unpack.sh NAME DIR [PATH...]    PATH...: only these members (e.g. ./boot)
set -eu

[ $# -ge 2 ] || {
    echo "usage: unpack.sh NAME DIR [PATH...]" >&2
    exit 2
}
name=$1 dir=$2
shift 2
here=$(cd "$(dirname "$0")" && pwd)
tar=$("$here/make-rootfs.sh" "$name" | tail -n 1)
mkdir -p "$dir"
if [ -n "$(ls -A "$dir")" ]; then
    echo "unpack.sh: $dir is not empty" >&2
    exit 1
fi
tar -xpf "$tar" --numeric-owner --xattrs --xattrs-include='*' -C "$dir" "$@"
