# Sourced by the scripts that build Debian root filesystems with mmdebstrap
# (hack/build-image.sh, hack/build-container-image.sh).
#
# debian_sources prints the Debian entries of this machine's apt sources
# (one-line and deb822 files) for the suite in $suite, as one-line entries
# without options: mmdebstrap brings the keys.
debian_sources() {
	local f
	for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
		[[ -f $f ]] || continue
		awk -v suite="$suite" '
			$1 != "deb" { next }
			{
				i = 2
				if ($i ~ /^\[/) { while (i < NF && $i !~ /\]$/) i++; i++ }
				if ($(i + 1) !~ "^" suite) next
				line = "deb"
				for (; i <= NF; i++) line = line " " $i
				print line
			}' "$f"
	done
	for f in /etc/apt/sources.list.d/*.sources; do
		[[ -f $f ]] || continue
		awk -v suite="$suite" '
			function flush(   n, m, uris, suites, i, j) {
				if (types ~ /(^| )deb( |$)/ && tolower(enabled) != "no") {
					n = split(uris_, uris, " ")
					m = split(suites_, suites, " ")
					for (i = 1; i <= n; i++)
						for (j = 1; j <= m; j++)
							if (suites[j] ~ "^" suite)
								print "deb " uris[i] " " suites[j] " " (comps == "" ? "main" : comps)
				}
				types = ""; uris_ = ""; suites_ = ""; comps = ""; enabled = ""; key = ""
			}
			/^[ \t]*$/ { flush(); next }
			/^#/ { next }
			/^[ \t]/ { next } # continuation lines (keys) do not matter here
			{
				key = tolower($1); sub(/:$/, "", key)
				val = $0; sub(/^[^:]*:[ \t]*/, "", val); gsub(/[ \t]+/, " ", val)
				if (key == "types") types = val
				else if (key == "uris") uris_ = val
				else if (key == "suites") suites_ = val
				else if (key == "components") comps = val
				else if (key == "enabled") enabled = val
			}
			END { flush() }' "$f"
	done
}
