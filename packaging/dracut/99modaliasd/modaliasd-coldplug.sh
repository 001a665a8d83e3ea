#!/bin/sh
# dracut pre-udev hook: hand udev's module loading over, start the daemon, which loads the
# drivers for every present device and for those that appear later, and wait until coldplug is
# complete. The cleanup hook stops it.
modaliasd -q udev-handoff on
modaliasd -q run --coldplug --pidfile /run/modaliasd/initramfs.pid &
modaliasd settle --timeout 30 || warn "modaliasd: coldplug not complete after 30 s"
