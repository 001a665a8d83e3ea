#!/bin/sh
# The system test's report for an OpenRC boot (tests/system/install-probe.sh puts it at
# /usr/local/sbin/system-test-report SERVICE, started in the background by SERVICE, local
# (/etc/local.d/system-test-report.start) or rc.local (/etc/rc.local)). Waits for the end of
# the boot (sysvinit starts the getty on ttyS0 once `/etc/init.d/rc 2` has ended; bounded)
# and for /proc/modules to stay unchanged, writes the report to the serial console, then
# powers off (unless the kernel command line has systemtest.keep).
#
# Report format, between the lines ==REPORT-BEGIN== and ==REPORT-END==: first "key: value"
# lines, then sections, each opened by a line "== NAME ==" and running to the next one.
set -u
service=${1:-local}
out=/run/system-test-report.txt

# shellcheck source=common.sh
. /usr/local/lib/system-test/common.sh

# The getty of /etc/inittab (respawn in runlevel 2) starts once the runlevel is done.
getty_running() {
    for cmdline in /proc/[0-9]*/cmdline; do
        if tr '\0' ' ' <"$cmdline" 2>/dev/null | grep -q '^[^ ]*getty .*ttyS0'; then
            return 0
        fi
    done
    return 1
}
getty=active
i=0
while ! getty_running; do
    if [ "$i" -ge 300 ]; then
        getty=inactive
        break
    fi
    sleep 1
    i=$((i + 1))
done
runlevel_done_at=$(up)
modules_at_runlevel_done=$(wc -l </proc/modules)
wait_modules_quiet

modules=$(cut -d' ' -f1 /proc/modules | sort)
crashed=$(rc-status --crashed 2>&1)

{
    # A line of its own, whatever the getty's prompt left on the current one.
    echo
    echo "==REPORT-BEGIN=="
    echo "init: openrc"
    echo "hostname: $(cat /etc/hostname)"
    echo "kernel: $(uname -r)"
    echo "cmdline: $(cat /proc/cmdline)"
    echo "report-service: $service"
    echo "runlevel: $(rc-status --runlevel 2>&1)"
    echo "service-start-s: $(cat "/run/system-test-$service-start" 2>/dev/null || echo -)"
    echo "runlevel-done-at-s: $runlevel_done_at"
    echo "modules-at-runlevel-done: $modules_at_runlevel_done"
    echo "modules-last-change-s: $last_change"
    echo "modules-quiet-wait-s: $quiet_waited"
    echo "uptime-s: $(up)"
    echo "serial-getty-ttyS0: $getty"
    echo "crashed-services: $(count "$crashed")"
    echo "modules: $(count "$modules")"
    echo "== crashed-services =="
    [ -z "$crashed" ] || printf '%s\n' "$crashed"
    echo "== rc-status-all =="
    rc-status -a 2>&1
    echo "== modules =="
    printf '%s\n' "$modules"
    echo "== devices-modalias =="
    devices_modalias
    echo "== dmesg-err =="
    dmesg --level=emerg,alert,crit,err 2>&1
    echo "== dmesg-modaliasd =="
    dmesg 2>&1 | grep -i modaliasd
    echo "== modaliasd-log =="
    cat /run/modaliasd.log 2>&1
    echo "== var-log-modaliasd =="
    grep -rsi modaliasd /var/log /run/openrc 2>/dev/null
    echo "==REPORT-END=="
} >"$out" 2>&1

to_console "$out"

if ! grep -qw systemtest.keep /proc/cmdline; then
    poweroff
fi
