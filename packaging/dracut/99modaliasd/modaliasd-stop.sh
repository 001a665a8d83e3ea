#!/bin/sh
# dracut cleanup hook: stop the initramfs daemon (it finishes the loads under way) and give
# module loading back to udev before the switch to the real root, whose modaliasd.service
# rescans sysfs at start.
modaliasd stop --pidfile /run/modaliasd/initramfs.pid
modaliasd -q udev-handoff off
