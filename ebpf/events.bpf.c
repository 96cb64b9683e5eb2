// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* Process events for the observe actor: signals generated, execs, process exits
 * and OOM kills, written to one ring buffer. BTF-enabled tracepoints (tp_btf)
 * hand us the subject task, so every record names the task the event is about
 * (not whoever happens to be running) and its cgroup. */
#include "vmlinux.h"
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

#include "events.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* include/linux/sched/signal.h: not in BTF, stable since 2.6. */
#define SIGNAL_GROUP_EXIT 0x00000004

/* Sized by the loader (bpf_map__set_max_entries) before load. */
struct {
  __uint(type, BPF_MAP_TYPE_RINGBUF);
  __uint(max_entries, 8 << 20);
} events SEC(".maps");

/* Wakeup batching (set by the loader before load; 0 = off). Off: the kernel
 * wakes the consumer for a record whenever the consumer has caught up, which
 * at high rates is nearly every record (an irq_work: a self-IPI, costly in a
 * VM). On: at most one wakeup per interval; the records in between are found
 * by the consumer's re-check (probe::poll_again_ms). */
const volatile __u64 wakeup_interval_ns = 0;
__u64 last_wakeup_ns = 0;

struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, CYTO_CNT_MAX);
  __type(key, __u32);
  __type(value, __u64);
} counters SEC(".maps");

static __always_inline void count(__u32 which) {
  __u64* v = bpf_map_lookup_elem(&counters, &which);
  if (v)
    *v += 1; /* per-CPU slot; a tracing program does not nest on its CPU */
}

static __always_inline struct cyto_event* reserve(__u64 size) {
  struct cyto_event* e = bpf_ringbuf_reserve(&events, size, 0);
  if (!e)
    count(CYTO_CNT_LOST);
  return e;
}

static __always_inline void submit(struct cyto_event* e) {
  __u64 flags = 0;
  if (wakeup_interval_ns) {
    /* A racy read/write between CPUs costs at most an extra wakeup. */
    if (e->timestamp_ns - last_wakeup_ns >= wakeup_interval_ns) {
      last_wakeup_ns = e->timestamp_ns;
      flags = BPF_RB_FORCE_WAKEUP;
    } else {
      flags = BPF_RB_NO_WAKEUP;
    }
  }
  bpf_ringbuf_submit(e, flags);
  count(CYTO_CNT_SUBMITTED);
}

/* The task's id in its own (innermost) pid namespace: NSpid's last field. */
static __always_inline __u32 ns_id(struct pid* pid) {
  unsigned int level = BPF_CORE_READ(pid, level);
  struct upid up = {};
  if (level > 64) /* MAX_PID_NS_LEVEL is 32 */
    return 0;
  const void* at = (const void*)pid + bpf_core_field_offset(struct pid, numbers) +
                   level * bpf_core_type_size(struct upid);
  bpf_probe_read_kernel(&up, sizeof(up), at);
  return up.nr;
}

/* The kernfs id of `t`'s cgroup for the pids controller: on a v1 or hybrid host that
 * is the pids hierarchy, whose directory inode numbers userspace maps back to cells
 * when the task is gone from /proc before its event is read. 0 without the controller. */
static __always_inline __u64 pids_cgroup(struct task_struct* t) {
  if (!bpf_core_enum_value_exists(enum cgroup_subsys_id, pids_cgrp_id))
    return 0;
  unsigned int id = bpf_core_enum_value(enum cgroup_subsys_id, pids_cgrp_id);
  if (id >= 64) /* CGROUP_SUBSYS_COUNT is far smaller */
    return 0;
  struct css_set* cs = BPF_CORE_READ(t, cgroups);
  struct cgroup_subsys_state* css = 0;
  const void* at = (const void*)cs + bpf_core_field_offset(struct css_set, subsys) +
                   id * sizeof(struct cgroup_subsys_state*);
  if (bpf_probe_read_kernel(&css, sizeof(css), at) != 0 || !css)
    return 0;
  return BPF_CORE_READ(css, cgroup, kn, id);
}

/* The fields every record has, taken from the subject task `t`. */
static __always_inline void fill_subject(struct cyto_event* e, __u32 kind,
                                         struct task_struct* t) {
  e->timestamp_ns = bpf_ktime_get_ns();
  e->kind = kind;
  e->pid = BPF_CORE_READ(t, pid);
  e->tgid = BPF_CORE_READ(t, tgid);
  e->cgroup_id = BPF_CORE_READ(t, cgroups, dfl_cgrp, kn, id);
  e->pids_cgroup_id = pids_cgroup(t);
  e->ns_pid = ns_id(BPF_CORE_READ(t, thread_pid));
  e->ns_tgid = ns_id(BPF_CORE_READ(t, group_leader, thread_pid));
  bpf_probe_read_kernel_str(e->comm, sizeof(e->comm), &t->comm);
  e->signo = 0;
  e->signal_result = 0;
  e->exit_status = 0;
  e->sender_pid = 0;
  e->sender_tgid = 0;
  e->sender_comm[0] = 0;
}

/* Runs in the sender's context, so `current` is the sender. */
SEC("tp_btf/signal_generate")
int BPF_PROG(on_signal_generate, int sig, struct kernel_siginfo* info, struct task_struct* task,
             int group, int result) {
  struct cyto_event* e = reserve(CYTO_EVENT_SHORT_SIZE);
  if (!e)
    return 0;
  fill_subject(e, CYTO_EV_SIGNAL, task);
  e->signo = sig;
  e->signal_result = result;
  __u64 id = bpf_get_current_pid_tgid();
  e->sender_pid = (__u32)id;
  e->sender_tgid = id >> 32;
  bpf_get_current_comm(e->sender_comm, sizeof(e->sender_comm));
  submit(e);
  return 0;
}

SEC("tp_btf/sched_process_exec")
int BPF_PROG(on_exec, struct task_struct* p, pid_t old_pid, struct linux_binprm* bprm) {
  struct cyto_event* e = reserve(sizeof(struct cyto_event));
  if (!e)
    return 0;
  fill_subject(e, CYTO_EV_EXEC, p);
  bpf_probe_read_kernel_str(e->filename, sizeof(e->filename), BPF_CORE_READ(bprm, filename));
  submit(e);
  return 0;
}

/* One event per process: only the last thread of the group to exit reports,
 * with the status wait(2) would return for the process. */
SEC("tp_btf/sched_process_exit")
int BPF_PROG(on_exit, struct task_struct* p, bool group_dead) {
  if (!group_dead)
    return 0;
  struct cyto_event* e = reserve(CYTO_EVENT_SHORT_SIZE);
  if (!e)
    return 0;
  fill_subject(e, CYTO_EV_EXIT, p);
  struct signal_struct* sig = BPF_CORE_READ(p, signal);
  if (BPF_CORE_READ(sig, flags) & SIGNAL_GROUP_EXIT)
    e->exit_status = BPF_CORE_READ(sig, group_exit_code);
  else
    e->exit_status = BPF_CORE_READ(p, group_leader, exit_code);
  submit(e);
  return 0;
}

SEC("tp_btf/mark_victim")
int BPF_PROG(on_oom_victim, struct task_struct* task, uid_t uid) {
  struct cyto_event* e = reserve(CYTO_EVENT_SHORT_SIZE);
  if (!e)
    return 0;
  fill_subject(e, CYTO_EV_OOM, task);
  submit(e);
  return 0;
}
