#!/bin/sh
# dracut cleanup hook: stop the initramfs daemon (it finishes the loads under way) before the
# switch to the real root, whose modaliasd.service rescans sysfs at start.
pid=$(cat /run/modaliasd/initramfs.pid 2>/dev/null) || return 0
kill -TERM "$pid" 2>/dev/null || return 0
while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
rm -f /run/modaliasd/initramfs.pid
