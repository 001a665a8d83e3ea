#!/bin/sh
# The system test's report for a systemd boot (tests/system/install-probe.sh puts it at
# /usr/local/sbin/system-test-report, started by system-test-report.service). Waits for the
# boot to finish, writes the report to the serial console, then powers off (unless the kernel
# command line has systemtest.keep).
#
# Before the report it waits for udev's queue to empty and for /proc/modules to stay unchanged.
#
# Report format, between the lines ==REPORT-BEGIN== and ==REPORT-END==: first "key: value"
# lines, then sections, each opened by a line "== NAME ==" and running to the next one.
set -u
out=/run/system-test-report.txt

# shellcheck source=common.sh
. /usr/local/lib/system-test/common.sh

state=$(timeout 300 systemctl is-system-running --wait 2>&1) || true
running_at=$(up)
modules_at_running=$(wc -l </proc/modules)
settle=ok
timeout 300 udevadm settle --timeout=290 || settle="failed ($?)"
settled_at=$(up)
wait_modules_quiet

# "1min 2.345s", "12.3s", "950ms" -> seconds.
seconds() {
    awk '{
        t = 0
        for (i = 1; i <= NF; i++) {
            v = $i + 0; u = $i; sub(/^[0-9.]+/, "", u)
            if (u == "h") t += v * 3600; else if (u == "min") t += v * 60
            else if (u == "s") t += v; else if (u == "ms") t += v / 1000
            else if (u == "us" || u == "µs") t += v / 1000000
        }
        printf "%.3f\n", t
    }'
}
# Microseconds of a monotonic timestamp -> seconds.
usec() { awk -v a="$1" -v b="${2:-0}" 'BEGIN { if (a > 0) printf "%.3f\n", (a - b) / 1000000; else print "-" }'; }

analyze=$(systemd-analyze --no-pager 2>&1) || true
reached=$(printf '%s\n' "$analyze" | sed -n 's/^\([^ ]*\.target\) reached after \(.*\) in userspace.*/\1 \2/p' | head -n 1)
userspace=$(systemctl show -P UserspaceTimestampMonotonic 2>/dev/null || echo 0)
multi_user=$(systemctl show -P ActiveEnterTimestampMonotonic multi-user.target 2>/dev/null || echo 0)
failed=$(systemctl --failed --plain --no-legend --no-pager 2>&1)
devices=$(systemctl list-units --type=device --state=active --plain --no-legend --no-pager | awk '{ print $1 }')
modules=$(cut -d' ' -f1 /proc/modules | sort)

{
    # A line of its own, whatever the getty's prompt left on the current one.
    echo
    echo "==REPORT-BEGIN=="
    echo "init: systemd"
    echo "hostname: $(cat /etc/hostname)"
    echo "kernel: $(uname -r)"
    echo "cmdline: $(cat /proc/cmdline)"
    echo "system-state: $state"
    echo "running-at-s: $running_at"
    echo "modules-at-running: $modules_at_running"
    echo "udev-settle: $settle"
    echo "settled-at-s: $settled_at"
    echo "modules-last-change-s: $last_change"
    echo "modules-quiet-wait-s: $quiet_waited"
    echo "uptime-s: $(up)"
    echo "target-reached: ${reached%% *}"
    echo "target-reached-s: $(if [ -n "$reached" ]; then echo "${reached#* }" | seconds; else echo -; fi)"
    echo "multi-user-target-s: $(usec "$multi_user" "$userspace")"
    echo "multi-user-target-since-boot-s: $(usec "$multi_user")"
    echo "serial-getty-ttyS0: $(systemctl is-active serial-getty@ttyS0.service)"
    echo "failed-units: $(count "$failed")"
    echo "device-units: $(count "$devices")"
    echo "modules: $(count "$modules")"
    echo "== failed-units =="
    [ -z "$failed" ] || printf '%s\n' "$failed"
    echo "== device-units =="
    printf '%s\n' "$devices"
    echo "== modules =="
    printf '%s\n' "$modules"
    echo "== devices-modalias =="
    devices_modalias
    echo "== systemd-analyze =="
    printf '%s\n' "$analyze"
    echo "== blame =="
    systemd-analyze blame --no-pager 2>&1 | head -n 20
    echo "== critical-chain =="
    systemd-analyze critical-chain --no-pager 2>&1
    echo "== journal-modaliasd =="
    journalctl -b -o short-monotonic --no-pager 2>&1 | grep -i modaliasd
    echo "== journal-err =="
    journalctl -b -p err -o short-monotonic --no-pager 2>&1
    echo "== journal-udevd =="
    journalctl -b -u systemd-udevd -o short-monotonic --no-pager 2>&1
    # With udev.log_level=debug, udev's kmod builtin logs every module it loads (in the
    # initramfs too, through the kernel log).
    echo "== journal-inserted =="
    journalctl -b -o short-monotonic --no-pager 2>&1 | grep "Inserted module"
    echo "== udev-handoff =="
    if command -v modaliasd >/dev/null; then
        modaliasd udev-handoff status 2>&1
        echo "exit $?"
    fi
    echo "== run-udev-rules =="
    ls /run/udev/rules.d 2>&1
    echo "==REPORT-END=="
} >"$out" 2>&1

to_console "$out"

if ! grep -qw systemtest.keep /proc/cmdline; then
    systemctl poweroff
fi
