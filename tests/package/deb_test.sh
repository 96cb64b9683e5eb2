#!/usr/bin/env bash
# The .deb end to end, on this machine: make it (cpack, as `make deb` does), dpkg -i it,
# check what it installed (binaries, demo image, conffile, units enabled and not
# started, the cyto group, man pages, completion), run the installed cytod on a
# temporary state dir and socket and `cyto run --rm demo echo hi` against it, then
# dpkg --purge and check that nothing is left. Root only; it changes /usr and /etc, so
# it refuses to run over an existing installation, and cleans up even when it fails.
set -euo pipefail
build=${1:?usage: deb_test.sh BUILD_DIR}
build=$(cd "$build" && pwd)

skip() { echo "SKIP: $*"; exit 77; }
[ "$(id -u)" -eq 0 ] || skip "needs root (dpkg -i)"
command -v dpkg-deb >/dev/null || skip "no dpkg-deb"
# Someone's real installation, or things this test would remove: leave them alone.
if dpkg-query -W -f='${Status}' cyto 2>/dev/null | grep -q 'installed'; then
  skip "package cyto is installed on this machine already"
fi
for f in /usr/bin/cytod /usr/bin/cyto /usr/bin/cyto-runtime /usr/share/cyto /etc/cyto; do
  [ ! -e "$f" ] || skip "$f exists already (not from this test)"
done
getent group cyto >/dev/null && skip "group cyto exists already (purge would remove it)"

work=$(mktemp -d /tmp/cyto-test-deb.XXXXXX)
daemon_pid=
cleanup() {
  local rc=$?
  if [ -n "$daemon_pid" ] && kill -0 "$daemon_pid" 2>/dev/null; then
    kill -KILL "$daemon_pid" 2>/dev/null || true
    wait "$daemon_pid" 2>/dev/null || true
  fi
  # Whatever the daemon left in its cgroup subtree (kill, then remove, deepest first).
  for top in /sys/fs/cgroup/*/"cyto-test-deb-$$"; do
    [ -d "$top" ] || continue
    find "$top" -name cgroup.procs -exec sh -c 'for p in $(cat "$1"); do kill -9 "$p"; done' _ {} \; 2>/dev/null || true
    find "$top" -depth -type d -exec rmdir {} \; 2>/dev/null || true
  done
  if dpkg-query -W -f='${Status}' cyto 2>/dev/null | grep -qv 'not-installed'; then
    dpkg --purge cyto >"$work/cleanup-purge.log" 2>&1 || cat "$work/cleanup-purge.log"
  fi
  rm -rf -- "$work"
  exit $rc
}
trap cleanup EXIT
trap 'exit 1' INT TERM

fail=0
check() {
  local what=$1; shift
  if "$@"; then echo "ok: $what"; else echo "FAIL: $what"; fail=1; fi
}

# 1. make the package (the build tree is built: ctest runs after the build)
t0=$(date +%s%N)
(cd "$build" && cpack -G DEB >"$work/cpack.log" 2>&1) || { cat "$work/cpack.log"; exit 1; }
deb=$(ls "$build"/package/cyto_*_amd64.deb | head -n1)
t1=$(date +%s%N)
echo "package: $deb ($(du -k "$deb" | cut -f1) KiB, cpack $(( (t1 - t0) / 1000000 )) ms)"
dpkg-deb --info "$deb" >"$work/info"
depends=$(dpkg-deb --field "$deb" Depends)
echo "Depends: $depends"
for dep in libcapnp libcaf-core libsystemd0 libseccomp2 libcap2 libsqlite3 libcurl \
           libarchive13 containernetworking-plugins iptables; do
  check "depends on $dep" grep -q "$dep" <<<"$depends"
done
check "recommends qemu" grep -q qemu-system-x86 <<<"$(dpkg-deb --field "$deb" Recommends)"
check "cytod.toml is a conffile" grep -qx /etc/cyto/cytod.toml <(dpkg-deb --ctrl-tarfile "$deb" | tar -xO ./conffiles)

# 2. install
dpkg -i "$deb" >"$work/dpkg.log" 2>&1 || { cat "$work/dpkg.log"; exit 1; }
for f in /usr/bin/cytod /usr/bin/cyto /usr/bin/cyto-runtime; do
  check "$f installed" test -x "$f"
done
check "demo image installed" test -f /usr/share/cyto/demo-image/index.json
check "config installed" test -f /etc/cyto/cytod.toml
check "units installed" test -f /usr/lib/systemd/system/cytod.service -a -f /usr/lib/systemd/system/cytod.socket
check "ExecStart names /usr/bin/cytod" grep -q '^ExecStart=/usr/bin/cytod ' /usr/lib/systemd/system/cytod.service
if command -v systemd-analyze >/dev/null; then
  # Parses the units as systemd would (also without systemd running): no warnings.
  verify=$(systemd-analyze verify --man=no /usr/lib/systemd/system/cytod.socket \
             /usr/lib/systemd/system/cytod.service 2>&1) && rc=0 || rc=$?
  check "systemd-analyze verify: clean ($verify)" test "$rc" -eq 0 -a -z "$verify"
fi
check "group cyto exists" sh -c 'getent group cyto >/dev/null'
check "cytod.socket enabled" test -L /etc/systemd/system/sockets.target.wants/cytod.socket
check "cytod.service enabled" test -L /etc/systemd/system/multi-user.target.wants/cytod.service
check "man pages" test -f /usr/share/man/man1/cyto.1.gz -o -f /usr/share/man/man1/cyto.1
check "man page cytod(8)" test -f /usr/share/man/man8/cytod.8.gz -o -f /usr/share/man/man8/cytod.8
check "bash completion" test -f /usr/share/bash-completion/completions/cyto
check "cyto --version has the revision" grep -Eq '^cyto [0-9.]+ \([0-9a-f]{7,}|unknown\)' <(/usr/bin/cyto --version)
# Not started: no cytod runs from /usr/bin (systemd may be absent; then nothing can run it).
check "not started" test -z "$(pgrep -xf '/usr/bin/cytod --config /etc/cyto/cytod.toml' || true)"

# 3. the installed daemon, with no runtime or demo image flags: it finds both itself
# (no default network: it would make a bridge and iptables rules in the host's namespace)
sock=$work/cyto.sock
/usr/bin/cytod --config /etc/cyto/cytod.toml --socket "$sock" --state-dir "$work/state" \
  --cgroup-root "cyto-test-deb-$$" --node-name "deb-test-$$" --default-network none \
  >"$work/cytod.log" 2>&1 &
daemon_pid=$!
for _ in $(seq 1 300); do
  grep -q ' ready: node=' "$work/cytod.log" && break
  kill -0 "$daemon_pid" 2>/dev/null || break
  sleep 0.05
done
check "installed cytod is ready" grep -q ' ready: node=' "$work/cytod.log"
out=$(/usr/bin/cyto --socket "$sock" run --rm demo echo hi 2>&1) || true
check "cyto run --rm demo echo hi prints hi" test "$out" = hi
[ "$out" = hi ] || { echo "cyto said: $out"; cat "$work/cytod.log"; }
check "runtime and demo image found beside the installed cytod" \
  grep -q 'containers: runtime /usr/bin/cyto-runtime, demo image /usr/share/cyto/demo-image' "$work/cytod.log"
if kill -0 "$daemon_pid" 2>/dev/null; then
  kill -TERM "$daemon_pid"
  wait "$daemon_pid" || true
fi
daemon_pid=

# 4. purge: nothing left
dpkg --purge cyto >"$work/purge.log" 2>&1 || { cat "$work/purge.log"; exit 1; }
for f in /usr/bin/cytod /usr/bin/cyto /usr/bin/cyto-runtime /usr/share/cyto /etc/cyto \
         /usr/lib/systemd/system/cytod.service /usr/lib/systemd/system/cytod.socket \
         /etc/systemd/system/sockets.target.wants/cytod.socket \
         /etc/systemd/system/multi-user.target.wants/cytod.service \
         /usr/share/bash-completion/completions/cyto; do
  check "purge removed $f" test ! -e "$f"
done
check "purge removed the group" test -z "$(getent group cyto || true)"
check "dpkg forgot the package" test -z "$(dpkg-query -W -f='${Status}' cyto 2>/dev/null | grep -v not-installed || true)"
exit $fail
