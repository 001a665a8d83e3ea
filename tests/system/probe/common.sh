#!/bin/sh
# Helpers shared by the system test's reports (report-systemd.sh, report-openrc.sh), sourced
# from /usr/local/lib/system-test/common.sh where install-probe.sh puts them.

# Waits until /proc/modules has not changed for QUIET seconds (kernel parameter
# systemtest.quiet=N, default 10), at most 300 s: the loaders may still be at work when the boot
# counts as finished.
# Sets quiet_waited (seconds) and last_change (uptime of the last change seen, "-": none).
# shellcheck disable=SC2034 # set for the report that sources this file
wait_modules_quiet() {
    quiet=$(sed -n 's/.*systemtest\.quiet=\([0-9]*\).*/\1/p' /proc/cmdline)
    quiet=${quiet:-10}
    last=$(cut -d' ' -f1 /proc/modules | sort | cksum)
    still=0 quiet_waited=0 last_change=-
    while [ "$still" -lt "$quiet" ] && [ "$quiet_waited" -lt 300 ]; do
        sleep 1
        quiet_waited=$((quiet_waited + 1))
        now=$(cut -d' ' -f1 /proc/modules | sort | cksum)
        if [ "$now" = "$last" ]; then
            still=$((still + 1))
        else
            last=$now still=0 last_change=$(cut -d' ' -f1 /proc/uptime)
        fi
    done
}
up() { cut -d' ' -f1 /proc/uptime; }

# The number of lines in $1 (0 for none).
count() { if [ -n "$1" ]; then printf '%s\n' "$1" | wc -l; else echo 0; fi; }

# Every device with a modalias: its sysfs path, the driver bound to it ("-": none) and its
# modalias.
devices_modalias() {
    find /sys/devices -name modalias -type f 2>/dev/null | sort | while read -r file; do
        dir=${file%/modalias}
        driver=-
        [ -e "$dir/driver" ] && driver=$(basename "$(readlink "$dir/driver")")
        echo "${dir#/sys} $driver $(cat "$file" 2>/dev/null)"
    done
}

# Writes the report file $1 to the serial console; kernel messages on the console would cut
# into its lines meanwhile.
to_console() {
    read -r level _ </proc/sys/kernel/printk
    dmesg -n 1 2>/dev/null || true
    cat "$1" >/dev/ttyS0
    dmesg -n "$level" 2>/dev/null || true
}
