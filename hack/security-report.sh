#!/usr/bin/env bash
# Runs the escape suite (internal/escape: every hostile case on every tier,
# the plugin-file attacks, the 1,000-call leak run), writes its table to
# SECURITY-REPORT.md and copies it into SECURITY.md between the report
# markers. Exits with the suite's status: a case that did not hold fails
# the run, and is in the table as not held.
set -uo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
report=$top/SECURITY-REPORT.md
cd "$top"
KMCP_SECURITY_REPORT=$report ${GO:-go} test -count=1 -timeout 40m ./internal/escape
status=$?
if [[ ! -s $report ]]; then
	echo "security-report: the suite wrote no report" >&2
	exit 1
fi
start='<!-- security-report:start -->'
end='<!-- security-report:end -->'
tmp=$(mktemp)
# The report's own title is this page's section heading.
awk -v s="$start" -v e="$end" -v f="$report" '
	$0 == s { print; while ((getline line < f) > 0) if (line !~ /^# /) print line; skip = 1; next }
	$0 == e { skip = 0 }
	!skip { print }' SECURITY.md >"$tmp" && cat "$tmp" >SECURITY.md # keeps the file's mode
rm -f "$tmp"
echo "security-report: $report and SECURITY.md written" >&2
exit $status
