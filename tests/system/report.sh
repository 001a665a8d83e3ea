#!/bin/sh
# Reads the report of install-probe.sh's unit out of a serial log (boot.sh's output):
#
#   report.sh LOG                  the whole report, markers excluded
#   report.sh LOG KEY              the value of one "KEY: value" line (e.g. modules)
#   report.sh LOG --section NAME   the lines of one section (e.g. modules, failed-units)
#
# Exits 1 when the log holds no complete report (==REPORT-BEGIN== ... ==REPORT-END==).
set -eu

[ $# -ge 1 ] || {
    echo "usage: report.sh LOG [KEY | --section NAME]" >&2
    exit 2
}
log=$1
# The marker may follow a getty's prompt on its line.
report=$(tr -d '\r' <"$log" | sed -n 's/.*==REPORT-BEGIN==$/==REPORT-BEGIN==/; /^==REPORT-BEGIN==$/,/^==REPORT-END==$/p')
case $report in
*==REPORT-END==) ;;
*)
    echo "report.sh: no complete report in $log" >&2
    exit 1
    ;;
esac
report=$(printf '%s\n' "$report" | sed '1d;$d')

if [ $# = 1 ]; then
    printf '%s\n' "$report"
elif [ "$2" = --section ]; then
    printf '%s\n' "$report" | awk -v name="== $3 ==" '
        /^== .* ==$/ { inside = ($0 == name); next }
        inside { print }'
else
    printf '%s\n' "$report" | awk -v key="$2: " '
        /^== .* ==$/ { exit }
        index($0, key) == 1 { print substr($0, length(key) + 1); exit }'
fi
