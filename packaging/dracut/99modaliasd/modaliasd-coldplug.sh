#!/bin/sh
# dracut pre-udev hook: start the daemon, which loads the drivers for every present device and
# for those that appear later, and wait until coldplug is complete. The cleanup hook stops it.
mkdir -p /run/modaliasd
modaliasd -q run --coldplug &
echo $! > /run/modaliasd/initramfs.pid
modaliasd settle --timeout 30 || warn "modaliasd: coldplug not complete after 30 s"
