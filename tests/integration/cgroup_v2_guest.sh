#!/usr/bin/env bash
# Runs the cgroup driver integration test inside a QEMU guest whose only cgroup mount is
# cgroup2 at /sys/fs/cgroup, so the v2 backend (actors/cells/cgroup_v2.cpp) is exercised
# even on hosts that are v1 or hybrid.
#
# usage: cgroup_v2_guest.sh TEST_BINARY WORK_DIR
#
# The guest is a Debian cloud kernel (fetched with apt-get download once, then cached in
# ${CYTO_CACHE_DIR:-/var/cache/cyto-test}/kernel/) and an initramfs holding busybox, the
# test binary and its shared libraries. Its /init runs the test and powers off.
#
# exit: 0 pass, 1 fail, 77 skip (qemu or a kernel cannot be had).
set -uo pipefail

readonly QEMU_TIMEOUT=170
readonly WANT_CONTROLLERS="cpu cpuset memory pids io"
readonly KCONFIG_NEEDED="CONFIG_CGROUPS CONFIG_CGROUP_SCHED CONFIG_FAIR_GROUP_SCHED CONFIG_CFS_BANDWIDTH CONFIG_CPUSETS CONFIG_MEMCG CONFIG_CGROUP_PIDS CONFIG_BLK_CGROUP CONFIG_BLK_DEV_INITRD CONFIG_RD_GZIP CONFIG_DEVTMPFS CONFIG_SERIAL_8250_CONSOLE"

start=$(date +%s)

log() { echo "cgroup_v2_guest: $*"; }
fail() {
  log "FAIL: $*"
  exit 1
}
skip() {
  echo "SKIP: $*"
  exit 77
}

if [ $# -ne 2 ]; then
  echo "usage: $0 TEST_BINARY WORK_DIR" >&2
  exit 2
fi

test_bin=$(readlink -f "$1") || fail "cannot resolve $1"
work=$2
[ -x "$test_bin" ] || fail "test binary $1 is missing or not executable"
mkdir -p "$work" || fail "cannot create $work"
work=$(readlink -f "$work")

cache_root=${CYTO_CACHE_DIR:-/var/cache/cyto-test}
kcache=$cache_root/kernel

# ---------------------------------------------------------------------------- tools
command -v qemu-system-x86_64 >/dev/null 2>&1 \
  || skip "qemu-system-x86_64 not found (install qemu-system-x86, see deploy/install-deps)"
busybox=/bin/busybox
[ -x "$busybox" ] || skip "$busybox not found (install busybox-static)"
for t in cpio gzip ldd; do
  command -v "$t" >/dev/null 2>&1 || skip "$t not found"
done

# ---------------------------------------------------------------------------- kernel
# Picks the cloud kernel package: the one linux-image-cloud-amd64 depends on, else the
# newest 6.1 cloud image in the package lists.
kernel_candidates() {
  apt-cache depends linux-image-cloud-amd64 2>/dev/null \
    | sed -n 's/^ *Depends: \(linux-image-[0-9][^ ]*-cloud-amd64\)$/\1/p'
  apt-cache search --names-only '^linux-image-[0-9].*-cloud-amd64$' 2>/dev/null \
    | awk '{print $1}' | grep -E '^linux-image-6\.1\.0-[0-9]+-cloud-amd64$' | sort -rV
}

fetch_kernel() {
  local dl=$work/kernel-dl candidates pkg deb apt_opts=()
  rm -rf "$dl" && mkdir -p "$dl" || return 1
  [ "$(id -u)" -eq 0 ] && apt_opts=(-o APT::Sandbox::User=root)
  candidates=$(kernel_candidates | awk '!seen[$0]++')
  if [ -z "$candidates" ] && [ "$(id -u)" -eq 0 ]; then
    log "no cloud kernel in the package lists; running apt-get update"
    apt-get update -q >"$dl/apt-update.log" 2>&1 || log "apt-get update failed (see $dl/apt-update.log)"
    candidates=$(kernel_candidates | awk '!seen[$0]++')
  fi
  [ -n "$candidates" ] || {
    log "no linux-image-*-cloud-amd64 package found"
    return 1
  }
  for pkg in $(echo "$candidates" | head -n 3); do
    log "downloading $pkg"
    if (cd "$dl" && apt-get -q "${apt_opts[@]}" download "$pkg") >"$dl/download.log" 2>&1; then
      deb=$(ls "$dl"/"$pkg"_*.deb 2>/dev/null | head -n 1)
      [ -n "$deb" ] && break
    fi
    log "download of $pkg failed: $(tail -n 2 "$dl/download.log" | tr '\n' ' ')"
    deb=
  done
  [ -n "$deb" ] || return 1
  dpkg -x "$deb" "$dl/x" || return 1
  local vmlinuz config
  vmlinuz=$(ls "$dl"/x/boot/vmlinuz-* 2>/dev/null | head -n 1)
  config=$(ls "$dl"/x/boot/config-* 2>/dev/null | head -n 1)
  [ -n "$vmlinuz" ] || {
    log "$deb has no boot/vmlinuz-*"
    return 1
  }
  cp "$vmlinuz" "$work/vmlinuz" || return 1
  [ -n "$config" ] && cp "$config" "$work/vmlinuz.config"
  echo "$pkg" >"$work/vmlinuz.package"
  # Cache for later runs; atomic rename so concurrent runs never see half a file.
  if mkdir -p "$kcache" 2>/dev/null; then
    local tmp
    tmp=$(mktemp -d "$kcache/.new.XXXXXX") && {
      cp "$work/vmlinuz" "$tmp/vmlinuz"
      [ -f "$work/vmlinuz.config" ] && cp "$work/vmlinuz.config" "$tmp/config"
      echo "$pkg" >"$tmp/package"
      [ -f "$tmp/config" ] && mv -f "$tmp/config" "$kcache/config"
      mv -f "$tmp/package" "$kcache/package"
      mv -f "$tmp/vmlinuz" "$kcache/vmlinuz"
      rmdir "$tmp"
    } || log "could not cache the kernel in $kcache"
  else
    log "cache dir $kcache not writable; kernel kept in $work only"
  fi
  rm -rf "$dl"
  return 0
}

if [ -s "$work/vmlinuz" ]; then
  log "kernel: $work/vmlinuz (work dir)"
elif [ -s "$kcache/vmlinuz" ]; then
  cp "$kcache/vmlinuz" "$work/vmlinuz" || fail "cannot copy cached kernel"
  [ -f "$kcache/config" ] && cp "$kcache/config" "$work/vmlinuz.config"
  [ -f "$kcache/package" ] && cp "$kcache/package" "$work/vmlinuz.package"
  log "kernel: $kcache/vmlinuz (cached, $(cat "$kcache/package" 2>/dev/null))"
else
  fetch_kernel || skip "cannot fetch a Debian cloud kernel with apt-get download"
  log "kernel: $(cat "$work/vmlinuz.package") (downloaded in $(($(date +%s) - start)) s)"
fi

if [ -f "$work/vmlinuz.config" ]; then
  for opt in $KCONFIG_NEEDED; do
    grep -q "^$opt=y" "$work/vmlinuz.config" || fail "guest kernel lacks $opt=y"
  done
  log "kernel config has the cgroup2 controllers ($WANT_CONTROLLERS) built in"
else
  log "no kernel config next to $work/vmlinuz; relying on the in-guest controller check"
fi

# ---------------------------------------------------------------------------- initramfs
root=$work/initramfs
rm -rf "$root" "$work/initramfs.cpio.gz"
mkdir -p "$root"/{bin,dev,proc,sys,tmp,run,etc,cyto} || fail "cannot create $root"
chmod 1777 "$root/tmp"

cp "$busybox" "$root/bin/busybox" || fail "cannot copy busybox"
for applet in $("$busybox" --list); do
  [ "$applet" = busybox ] || ln -sf busybox "$root/bin/$applet"
done
# A static busybox is the norm; a dynamic one needs its libraries too.
libs_of() {
  ldd "$1" 2>/dev/null | awk '
    /=> *not found/ { print "NOTFOUND " $1; next }
    /=> *\// { print $3; next }
    /^[ \t]*\// { print $1 }'
}
bin_name=$(basename "$test_bin")
# The test does not need debug info; stripping keeps the initramfs (and boot) small.
if command -v strip >/dev/null 2>&1; then
  strip --strip-debug -o "$root/cyto/$bin_name" "$test_bin" || cp "$test_bin" "$root/cyto/$bin_name"
else
  cp "$test_bin" "$root/cyto/$bin_name"
fi
chmod 755 "$root/cyto/$bin_name"

nlibs=0
while read -r lib; do
  case $lib in
    NOTFOUND*) fail "ldd: ${lib#NOTFOUND } not found for $test_bin" ;;
  esac
  mkdir -p "$root$(dirname "$lib")"
  cp -L "$lib" "$root$lib" || fail "cannot copy $lib"
  nlibs=$((nlibs + 1))
done < <( (libs_of "$test_bin"; libs_of "$busybox") | sort -u)
[ "$nlibs" -gt 0 ] || log "warning: ldd listed no libraries for $test_bin (static?)"

printf 'root:x:0:0:root:/root:/bin/sh\n' >"$root/etc/passwd"
printf 'root:x:0:\n' >"$root/etc/group"
# The kernel opens /dev/console for init; mknod needs root, /init re-opens it anyway.
[ "$(id -u)" -eq 0 ] && mknod -m 600 "$root/dev/console" c 5 1 2>/dev/null

cat >"$root/init" <<EOF
#!/bin/busybox sh
export PATH=/bin
mount -t devtmpfs devtmpfs /dev
exec </dev/console >/dev/console 2>&1
echo
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t tmpfs -o mode=1777 tmpfs /tmp
mount -t tmpfs tmpfs /run
mount -t cgroup2 cgroup2 /sys/fs/cgroup || echo "CYTO-GUEST-ERROR: cannot mount cgroup2"
echo "CYTO-GUEST-BOOTED kernel=\$(uname -r) cpus=\$(grep -c ^processor /proc/cpuinfo)"
echo "CYTO-GUEST-CGROUP-MOUNTS:"
grep cgroup /proc/self/mountinfo
echo "CYTO-GUEST-CGROUP-CONTROLLERS=\$(cat /sys/fs/cgroup/cgroup.controllers)"
cd /tmp
echo "CYTO-GUEST-TEST-START"
# report_level=confirm (Boost's default) is the level that prints "*** No errors detected".
/cyto/$bin_name --log_level=message --report_level=confirm --color_output=no
rc=\$?
echo "CYTO-GUEST-EXIT=\$rc"
sync
poweroff -f
sleep 2
echo o >/proc/sysrq-trigger
EOF
chmod 755 "$root/init"

(cd "$root" && find . -print0 | LC_ALL=C sort -z | cpio --null -o -H newc --quiet --owner=0:0) \
  | gzip -1 >"$work/initramfs.cpio.gz" || fail "cannot build the initramfs"
log "initramfs: $(du -h "$work/initramfs.cpio.gz" | cut -f1) ($nlibs libraries)"

# ---------------------------------------------------------------------------- boot
# KVM only when hardware-backed: a paravirtual /dev/kvm (/sys/module/kvm_pvm) cannot boot a
# stock kernel ("KVM internal error ... emulation failure"). Same rule as actors/vms/accel.cpp.
if [ -r /dev/kvm ] && [ -w /dev/kvm ] && { [ -d /sys/module/kvm_intel ] || [ -d /sys/module/kvm_amd ]; }; then
  accel=(-accel kvm -cpu host)
  log "accelerator: kvm (hardware-backed)"
elif [ -d /sys/module/kvm_pvm ]; then
  accel=(-accel tcg)
  log "accelerator: tcg (/dev/kvm is paravirtual kvm_pvm, cannot boot a stock kernel)"
else
  accel=(-accel tcg)
  log "accelerator: tcg (no hardware-backed /dev/kvm)"
fi

console=$work/console.log
rm -f "$console"
boot_start=$(date +%s)
timeout "$QEMU_TIMEOUT" qemu-system-x86_64 "${accel[@]}" -m 512 -smp 1 -nographic -no-reboot \
  -nic none -kernel "$work/vmlinuz" -initrd "$work/initramfs.cpio.gz" \
  -append "console=ttyS0 panic=-1 quiet" </dev/null >"$console" 2>&1
qrc=$?
boot_secs=$(($(date +%s) - boot_start))

# The raw log has CRs and the firmware's terminal escapes; the checks read a clean copy.
clean=$work/console.clean.log
tr -d '\r' <"$console" | sed -e 's/\x1b\[[0-9;?]*[A-Za-z]//g' -e 's/\x1b[()][0-9A-Za-z]//g' -e 's/\x1bc//g' >"$clean"
echo "----- guest console ($console) -----"
cat "$clean"
echo "----- end of guest console -----"
log "qemu exited $qrc after ${boot_secs}s; total $(($(date +%s) - start))s"

problems=()
[ "$qrc" -eq 124 ] && problems+=("guest did not power off within ${QEMU_TIMEOUT}s")
grep -q '^CYTO-GUEST-BOOTED' "$clean" || fail "guest never reached /init (qemu exit $qrc)"
ctrl_line=$(grep '^CYTO-GUEST-CGROUP-CONTROLLERS=' "$clean" | head -n 1)
for c in $WANT_CONTROLLERS; do
  echo " ${ctrl_line#*=} " | grep -q " $c " \
    || problems+=("guest cgroup2 root lacks the $c controller (${ctrl_line:-no controller line})")
done
exit_line=$(grep -m1 '^CYTO-GUEST-EXIT=' "$clean")
if [ -z "$exit_line" ]; then
  problems+=("guest printed no CYTO-GUEST-EXIT marker (test crashed or hung?)")
elif [ "$exit_line" != "CYTO-GUEST-EXIT=0" ]; then
  problems+=("test exited ${exit_line#*=} in the guest")
fi
grep -q 'cgroup backend v2' "$clean" || problems+=("the test did not report 'cgroup backend v2'")
grep -q '\*\*\* No errors detected' "$clean" || problems+=("Boost.Test did not report '*** No errors detected'")
if [ ${#problems[@]} -gt 0 ]; then
  grep -E 'error: in|fatal error|failure' "$clean" | head -n 40 | sed 's/^/  guest: /'
  for p in "${problems[@]}"; do
    log "FAIL: $p"
  done
  exit 1
fi
log "PASS: cgroup v2 backend passed in the guest"
exit 0
