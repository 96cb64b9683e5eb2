#!/usr/bin/env bash
# Real engines drive cyto-runtime (root): podman 4.3 (with conmon) and containerd's ctr
# (runc v2 shim with cyto-runtime as its runc binary), both from Debian, on the demo image
# imported from an oci-archive. Everything lives in a temp dir: podman's and containerd's
# storage, the runtime's state roots, and cgroups under cyto-test-engines-<pid> only.
# Containers get no network (podman --network none; ctr's default is a netns with lo).
# Usage: engines_test.sh CYTO_RUNTIME DEMO_IMAGE_DIR
# Not -e: every step is a check, and a failed one is counted, not fatal.
set -uo pipefail
runtime=$(realpath "${1:?usage: $0 CYTO_RUNTIME DEMO_IMAGE_DIR}")
demo=${2:?usage: $0 CYTO_RUNTIME DEMO_IMAGE_DIR}

for tool in podman conmon containerd ctr containerd-shim-runc-v2 script; do
  command -v "$tool" >/dev/null || { echo "SKIP: $tool is not installed (deploy/install-deps)"; exit 77; }
done
[ "$(id -u)" -eq 0 ] || { echo "SKIP: needs root"; exit 77; }

tmp=$(mktemp -d /tmp/cyto-engines.XXXXXX)
cg=cyto-test-engines-$$
ctd_pid=
failures=0
# containerd keeps shim sockets and fifos in /run/containerd whatever its config says.
[ -e /run/containerd ] && had_run_containerd=1 || had_run_containerd=0

fail() {
  echo "FAIL: $*"
  failures=$((failures + 1))
}

check() { # check WHAT EXPECTED ACTUAL
  if [[ "$3" == *"$2"* ]]; then echo "ok: $1"; else fail "$1: want '$2' in '$3'"; fi
}

pm() {
  podman --root "$tmp/podman/root" --runroot "$tmp/podman/run" --tmpdir "$tmp/podman/tmp" \
    --cgroup-manager cgroupfs --events-backend file --runtime "$tmp/podman/runtime" "$@"
}
ctr_() { ctr --address "$tmp/ctd/containerd.sock" "$@"; }

cleanup() {
  pm rm -af -t 0 >/dev/null 2>&1
  pm rmi -af >/dev/null 2>&1
  if [ -n "$ctd_pid" ]; then
    for t in $(ctr_ task ls -q 2>/dev/null); do ctr_ task kill -s SIGKILL "$t"; sleep 0.2; ctr_ task rm -f "$t"; done
    for c in $(ctr_ c ls -q 2>/dev/null); do ctr_ c rm "$c"; done
    kill "$ctd_pid" 2>/dev/null
    wait "$ctd_pid" 2>/dev/null
  fi
  # Mounts left below the temp dir (overlay snapshots, podman's shm), deepest first.
  awk -v t="$tmp" '$5 ~ "^"t {print $5}' /proc/self/mountinfo | sort -r | xargs -r -n1 umount -l
  rm -rf "$tmp"
  [ "$had_run_containerd" -eq 0 ] && rm -rf /run/containerd
  for d in /sys/fs/cgroup/*/"$cg" /sys/fs/cgroup/unified/"$cg"; do
    [ -d "$d" ] && find "$d" -depth -type d -exec rmdir {} + 2>/dev/null
  done
}
trap cleanup EXIT

# Machines of this kind lack CAP_SYS_RESOURCE, so no runtime may raise a hard limit
# (crun and runc fail alike): podman's default rlimits for root (nofile and nproc at
# 1048576) are replaced by lower ones.
limits=(--ulimit nofile=1024:1024 --ulimit nproc=1024:1024)
mkdir -p "$tmp/podman/tmp"
# The runtime's state root for podman. podman 4.3 drops --runtime-flag from the exit
# command conmon runs (`podman container cleanup`), whose delete would then look in the
# default root: so a wrapper names the root whenever podman does not.
cat >"$tmp/podman/runtime" <<EOF
#!/bin/sh
case " \$* " in *" --root"*) exec "$runtime" "\$@" ;; esac
exec "$runtime" --root "$tmp/podman/rt" "\$@"
EOF
chmod +x "$tmp/podman/runtime"
archive=$tmp/demo.tar
tar -C "$demo" -cf "$archive" .

echo "== podman $(podman --version | awk '{print $3}') with --runtime cyto-runtime"
loaded=$(pm load -i "$archive" 2>&1 | tail -n1)
check "podman load of the oci-archive" "Loaded image" "$loaded"
image=$(pm images -q | head -n1)
run_opts=(--network none --cgroup-parent "/$cg/podman" "${limits[@]}")
out=$(pm run --rm "${run_opts[@]}" "$image" echo hi-from-podman 2>&1)
check "podman run --rm" "hi-from-podman" "$out"
pm run -d --name c1 "${run_opts[@]}" "$image" sleep 300 >/dev/null
pid=$(pm inspect -f '{{.State.Pid}}' c1)
check "the container's process is in cgroupsPath under --cgroup-parent" \
  "/$cg/podman/libpod-" "$(grep -m1 ':memory:' "/proc/$pid/cgroup")"
check "podman ps lists it running" "Up" "$(pm ps --filter name=c1 --format '{{.Status}}')"
check "podman exec" "exec-ok" "$(pm exec c1 echo exec-ok 2>&1)"
pm exec c1 sh -c 'exit 7'; code=$?
check "podman exec keeps the exit code" "7" "$code"
# In a terminal (script gives podman a pty): -it through conmon's console socket.
# (the commands sleep a moment before exiting: conmon may drop the last output of a
# pty that closes at once; seen once in eight runs)
in_tty() {
  local cmd
  cmd=$(printf '%q ' podman --root "$tmp/podman/root" --runroot "$tmp/podman/run" \
    --tmpdir "$tmp/podman/tmp" --cgroup-manager cgroupfs --events-backend file \
    --runtime "$tmp/podman/runtime" "$@")
  script -qec "$cmd" /dev/null 2>&1
}
tty_out=$(in_tty exec -it c1 sh -c 'tty; echo tty-ok; sleep 0.2')
check "podman exec -it gets a pty" "/dev/pts/" "$tty_out"
check "podman exec -it runs" "tty-ok" "$tty_out"
tty_run=$(in_tty run --rm -it "${run_opts[@]}" "$image" sh -c 'tty; echo run-tty-ok; sleep 0.2')
check "podman run -it gets a pty" "run-tty-ok" "$tty_run"
pm pause c1 >/dev/null
check "podman pause" "paused" "$(pm inspect -f '{{.State.Status}}' c1)"
pm unpause c1 >/dev/null
check "podman unpause" "running" "$(pm inspect -f '{{.State.Status}}' c1)"
pm update --memory 64m c1 >/dev/null 2>&1
check "podman update --memory" "67108864" \
  "$(cat /sys/fs/cgroup/memory/"$cg"/podman/libpod-*/memory.limit_in_bytes 2>/dev/null)"
pm stop -t 1 c1 >/dev/null 2>&1
check "podman stop" "Exited" "$(pm ps -a --filter name=c1 --format '{{.Status}}')"
kill -0 "$pid" 2>/dev/null && fail "the container's process $pid outlived stop"
pm rm c1 >/dev/null
check "podman rm" "" "$(pm ps -aq)"
left=$(ls "$tmp/podman/rt" 2>/dev/null || true)
[ -z "$left" ] && echo "ok: no runtime state left" || fail "runtime state left: $left"
[ -d "/sys/fs/cgroup/memory/$cg/podman" ] && [ -n "$(ls -d /sys/fs/cgroup/memory/$cg/podman/libpod-* 2>/dev/null)" ] \
  && fail "container cgroups left under /sys/fs/cgroup/memory/$cg/podman"

echo "== containerd $(containerd --version | awk '{print $3}') (ctr, runc v2 shim, runc binary cyto-runtime)"
mkdir -p "$tmp/ctd"
cat >"$tmp/ctd/config.toml" <<EOF
version = 2
root = "$tmp/ctd/root"
state = "$tmp/ctd/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$tmp/ctd/containerd.sock"
[ttrpc]
  address = "$tmp/ctd/containerd.sock.ttrpc"
EOF
containerd --config "$tmp/ctd/config.toml" >"$tmp/ctd/log" 2>&1 &
ctd_pid=$!
for _ in $(seq 50); do ctr_ version >/dev/null 2>&1 && break; sleep 0.1; done
ctr_ images import --base-name localhost/demo "$archive" >/dev/null
ref=$(ctr_ images ls -q | head -n1)
ctr_opts=(--runc-binary "$runtime" --runc-root "$tmp/ctd/rt")
out=$(ctr_ run --rm "${ctr_opts[@]}" --cgroup "/$cg/ctd/c1" "$ref" c1 echo hi-from-ctr 2>&1)
check "ctr run --rm" "hi-from-ctr" "$out"
ctr_ run -d "${ctr_opts[@]}" --cgroup "/$cg/ctd/c2" "$ref" c2 sleep 300 >/dev/null
check "ctr task ls" "RUNNING" "$(ctr_ task ls)"
cpid=$(ctr_ task ls | awk '$1 == "c2" {print $2}')
check "the task's process is in its cgroupsPath" ":/$cg/ctd/c2" "$(grep -m1 ':memory:' "/proc/$cpid/cgroup")"
check "ctr task exec" "ctr-exec-ok" "$(ctr_ task exec --exec-id e1 c2 echo ctr-exec-ok 2>&1)"
ctr_ task pause c2
check "ctr task pause" "PAUSED" "$(ctr_ task ls)"
ctr_ task resume c2
check "ctr task resume" "RUNNING" "$(ctr_ task ls)"
ctr_ task kill -s SIGKILL c2
for _ in $(seq 50); do [[ "$(ctr_ task ls)" == *STOPPED* ]] && break; sleep 0.1; done
check "ctr task kill" "STOPPED" "$(ctr_ task ls)"
ctr_ task rm c2 >/dev/null
ctr_ c rm c2
left=$(ls "$tmp/ctd/rt/default" 2>/dev/null || true)
[ -z "$left" ] && echo "ok: no runtime state left" || fail "runtime state left: $left"
[ -d "/sys/fs/cgroup/memory/$cg/ctd/c2" ] && fail "cgroup /sys/fs/cgroup/memory/$cg/ctd/c2 left"

if [ "$failures" -ne 0 ]; then
  echo "$failures check(s) failed"
  exit 1
fi
echo "all engine checks passed"
