#!/bin/bash
# Installs the system test's report into an unpacked root file system, before boot.sh boots it:
#
#   install-probe.sh DIR
#
# systemd (DIR/etc/systemd/system exists and /sbin/init is systemd):
#   /usr/local/sbin/system-test-report (probe/report-systemd.sh) and
#   /etc/systemd/system/system-test-report.service, enabled for multi-user.target by its symlink.
# OpenRC (DIR/sbin/openrc exists):
#   /usr/local/sbin/system-test-report (probe/report-openrc.sh), started in the background by
#   /etc/local.d/system-test-report.start of the local service where there is one, else (Debian's
#   openrc has no local service) by /etc/boot.d/system-test-report, which Debian's
#   /etc/rc.local runs (initscripts' rc.local service); either service is put in the default
#   runlevel.
# Either one waits for the end of the boot, writes the report to ttyS0 between
# ==REPORT-BEGIN== and ==REPORT-END== and powers off (kernel parameter systemtest.keep: it stays
# up). report.sh extracts the report from the serial log.
set -eu

die() {
    echo "install-probe.sh: $*" >&2
    exit 1
}
[ $# = 1 ] || die "usage: install-probe.sh DIR"
root=$1
here=$(cd "$(dirname "$0")" && pwd)
[ -d "$root/etc" ] || die "$root is not a root file system"
install -D -m 0644 "$here/probe/common.sh" "$root/usr/local/lib/system-test/common.sh"

init=$(readlink "$root/sbin/init" || true)
if [ -d "$root/etc/systemd/system" ] && [ "${init##*/}" = systemd ]; then
    install -D -m 0755 "$here/probe/report-systemd.sh" "$root/usr/local/sbin/system-test-report"
    install -m 0644 "$here/probe/system-test-report.service" "$root/etc/systemd/system/system-test-report.service"
    mkdir -p "$root/etc/systemd/system/multi-user.target.wants"
    ln -sfn /etc/systemd/system/system-test-report.service \
        "$root/etc/systemd/system/multi-user.target.wants/system-test-report.service"
    echo "install-probe.sh: systemd report installed in $root" >&2
elif [ -x "$root/sbin/openrc" ] || [ -x "$root/usr/sbin/openrc" ]; then
    install -D -m 0755 "$here/probe/report-openrc.sh" "$root/usr/local/sbin/system-test-report"
    # OpenRC's own local service runs /etc/local.d/*.start; Debian's openrc leaves it out and
    # has initscripts' rc.local (Required-Start: $all, in the default runlevel) run /etc/rc.local.
    if [ -e "$root/etc/init.d/local" ]; then
        service=local starter=$root/etc/local.d/system-test-report.start
    elif [ -e "$root/etc/init.d/rc.local" ]; then
        # Debian's /etc/rc.local (initscripts) runs the scripts of /etc/boot.d.
        service=rc.local starter=$root/etc/boot.d/system-test-report
        if [ ! -e "$root/etc/rc.local" ]; then
            printf '#!/bin/sh\nrun-parts /etc/boot.d\n' >"$root/etc/rc.local"
            chmod 0755 "$root/etc/rc.local"
        fi
        grep -q '/etc/boot.d' "$root/etc/rc.local" ||
            die "$root/etc/rc.local does not run /etc/boot.d"
    else
        die "$root has neither /etc/init.d/local nor /etc/init.d/rc.local"
    fi
    mkdir -p "$(dirname "$starter")"
    cat >"$starter" <<EOF
#!/bin/sh
# The system test's report (tests/system/install-probe.sh): in the background, so that the
# $service service and the runlevel finish first.
set -eu
cut -d' ' -f1 /proc/uptime >/run/system-test-$service-start
setsid /usr/local/sbin/system-test-report $service </dev/null >/dev/null 2>&1 &
EOF
    chmod 0755 "$starter"
    mkdir -p "$root/etc/runlevels/default"
    ln -sfn "/etc/init.d/$service" "$root/etc/runlevels/default/$service"
    echo "install-probe.sh: OpenRC report installed in $root" >&2
else
    die "$root: neither systemd (/sbin/init -> systemd) nor OpenRC"
fi
