/* The ring buffer record shared by events.bpf.c (the writer) and probe.cpp (the
 * reader). Plain C with fixed-size fields so both compilers agree on the layout.
 * Records of every kind but exec end before `filename`: the loader reads only
 * the bytes the kernel wrote. */
#ifndef CYTO_EBPF_EVENTS_H
#define CYTO_EBPF_EVENTS_H

#ifndef __VMLINUX_H__
#include <linux/types.h>
#endif

#define CYTO_COMM_LEN 16
#define CYTO_FILENAME_LEN 128

enum cyto_event_kind {
  CYTO_EV_SIGNAL = 1,
  CYTO_EV_EXEC = 2,
  CYTO_EV_EXIT = 3,
  CYTO_EV_OOM = 4,
};

/* Indexes into the per-CPU `counters` array map. */
enum cyto_counter {
  CYTO_CNT_SUBMITTED = 0,
  CYTO_CNT_LOST = 1,
  CYTO_CNT_MAX = 2,
};

struct cyto_event {
  __u64 timestamp_ns; /* bpf_ktime_get_ns() */
  __u64 cgroup_id;    /* the subject task's cgroup on the unified (v2) hierarchy */
  __u64 pids_cgroup_id; /* its cgroup in the pids controller's hierarchy (v1 and hybrid
                           hosts, where cells live there; on v2 the same as cgroup_id or
                           an ancestor's) */
  __u32 pid;          /* subject: signal target, exec'd/exiting task, OOM victim */
  __u32 tgid;
  __u32 kind; /* enum cyto_event_kind */
  __s32 signo;
  __s32 signal_result; /* TRACE_SIGNAL_*: 0 delivered, 1 ignored, 2 already pending, ... */
  __s32 exit_status;   /* wait(2) status: code << 8 | terminating signal */
  __u32 sender_pid;
  __u32 sender_tgid;
  __u32 ns_pid; /* pid and tgid in the subject's own (innermost) pid namespace */
  __u32 ns_tgid;
  char comm[CYTO_COMM_LEN];
  char sender_comm[CYTO_COMM_LEN];
  char filename[CYTO_FILENAME_LEN]; /* exec records only */
};

/* The size of a record without `filename` (every kind but exec). */
#define CYTO_EVENT_SHORT_SIZE __builtin_offsetof(struct cyto_event, filename)

#endif
