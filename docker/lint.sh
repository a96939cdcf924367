#!/usr/bin/env bash
# Lint docker/: the Dockerfile (hadolint when installed; otherwise
# dockertool.py's rules, since hadolint is not packaged in Debian), its RUN
# steps and these scripts with shellcheck (when installed), and the compose
# and Kubernetes YAML with yamllint (relaxed) plus semantic checks
# (dockertool.py lint-manifests: probes, securityContext, volumes, ports).
# yamllint is installed with apt-get when missing and we are root.
# Exit 0 only when every check passed.
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
py=${PYTHON:-/usr/bin/python3}
[ -x "$py" ] || py=python3
fail=0
start=$(date +%s%N)

if command -v hadolint >/dev/null 2>&1; then
	hadolint --ignore DL3008 "$here/Dockerfile" || fail=1
	echo "hadolint: done"
fi
"$py" "$here/dockertool.py" lint-dockerfile || fail=1

if command -v shellcheck >/dev/null 2>&1; then
	if shellcheck "$here"/*.sh; then echo "shellcheck scripts: ok"; else fail=1; fi
fi
"$py" "$here/dockertool.py" run-steps-shellcheck || fail=1

if ! command -v yamllint >/dev/null 2>&1 && [ "$(id -u)" = 0 ] \
	&& command -v apt-get >/dev/null 2>&1; then
	apt-get install -y --no-install-recommends yamllint >/dev/null 2>&1 \
		|| { apt-get update >/dev/null 2>&1 \
			&& apt-get install -y --no-install-recommends yamllint >/dev/null 2>&1; } \
		|| true
fi
yaml_files=("$here/compose.yaml" "$here"/k8s/*.yaml "$here"/k8s/postgresql/*.yaml)
if command -v yamllint >/dev/null 2>&1; then
	if yamllint -f parsable -d '{extends: relaxed, rules: {line-length: {max: 120}}}' \
		"${yaml_files[@]}"; then
		echo "yamllint: ok (${#yaml_files[@]} files)"
	else
		fail=1
	fi
else
	echo "yamllint: not installed and not installable" >&2
	fail=1
fi
"$py" "$here/dockertool.py" lint-manifests || fail=1
if command -v haproxy >/dev/null 2>&1; then
	# compose's service names do not resolve here: init-addr none lets it parse
	if haproxy -c -q -f "$here/haproxy.cfg"; then echo "haproxy.cfg: ok"; else fail=1; fi
fi

ms=$((($(date +%s%N) - start) / 1000000))
printf 'docker lint: %s in %d.%03d s\n' "$([ $fail = 0 ] && echo OK || echo FAILED)" \
	$((ms / 1000)) $((ms % 1000))
exit $fail
