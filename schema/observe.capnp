@0xe7c3b5a1d9f20804;
# ObserveService: streams of what the node does: the daemon's own log, cgroup stats of
# cells, executables' output and kernel events (signals, exec, exit, OOM kills).
$import "/capnp/c++.capnp".namespace("cyto::schema");

enum LogLevel {
  trace @0;
  debug @1;
  info @2;
  warn @3;
  error @4;
  critical @5;
}

struct LogEntry {
  unixNanos @0 :Int64;
  level @1 :LogLevel;
  logger @2 :Text;     # the actor or component that logged (gateway, node, observe, ...)
  message @3 :Text;
  seq @4 :UInt64;      # daemon-wide sequence number; gaps mean dropped entries
}

# Implemented by the client; the daemon pushes entries with flow control.
interface LogSink {
  line @0 (entry :LogEntry) -> stream;
  # The subscriber fell behind and `count` entries were dropped for it.
  dropped @1 (count :UInt64) -> stream;
}

# -- stats --------------------------------------------------------------------------

# What to sample. Empty cell: every cell. (Containers and VMs come later.)
struct StatsTarget {
  cell @0 :Text;
}

struct CellStats {
  cell @0 :Text;
  cpuUsageUsec @1 :UInt64;   # cumulative CPU time of the cell and its children
  cpuPercent @2 :Float64;    # over the last interval, of one CPU (200 = two busy CPUs)
  intervalUsec @3 :UInt64;   # what cpuPercent is over; 0 on the first sample
  memoryCurrent @4 :UInt64;  # bytes
  memoryPeak @5 :UInt64;     # bytes; 0 if the kernel does not track it
  pidsCurrent @6 :UInt64;
  ioReadBytes @7 :UInt64;
  ioWriteBytes @8 :UInt64;
  oomKills @9 :UInt64;
  memoryLimit @10 :UInt64;   # bytes; 0 = unlimited
  netRxBytes @11 :UInt64;    # the cell's network namespace, lo aside (netAvailable)
  netTxBytes @12 :UInt64;
  netAvailable @13 :Bool;    # false: its processes share the host's namespace
}

interface StatsSink {
  sample @0 (unixNanos :Int64, cells :List(CellStats)) -> stream;
}

# -- output -------------------------------------------------------------------------

enum OutputStream {
  stdout @0;
  stderr @1;
  both @2;
}

struct OutputLine {
  stream @0 :OutputStream;   # stdout or stderr
  line @1 :Text;
  unixNanos @2 :Int64;       # when the daemon saw it (0: unknown)
}

interface OutputSink {
  # Lines in order; `dropped` lines were lost just before them (reader too slow, or
  # history longer than the daemon keeps).
  lines @0 (lines :List(OutputLine), dropped :UInt64) -> stream;
}

# -- kernel events ------------------------------------------------------------------

struct EventFilter {
  cell @0 :Text;        # empty: the whole host
  nested @1 :Bool;      # also the cells under `cell`
  executable @2 :Text;  # only this executable of `cell`
}

enum EventKind {
  unknown @0;
  signal @1;
  exec @2;
  exit @3;
  oom @4;
}

struct Event {
  kind @0 :EventKind;
  monotonicNanos @1 :Int64;  # CLOCK_MONOTONIC in the kernel
  cell @2 :Text;             # "" when the process is in no cell
  executable @3 :Text;       # the cyto executable it belongs to, when known
  pid @4 :UInt32;            # host thread id
  tgid @5 :UInt32;           # host process id
  nsPid @6 :UInt32;          # process id inside its own pid namespace (0: unknown)
  ppid @7 :UInt32;
  comm @8 :Text;
  signo @9 :Int32;           # signal
  signalResult @10 :Int32;   # signal: 0 = delivered
  senderPid @11 :UInt32;
  senderTgid @12 :UInt32;
  senderComm @13 :Text;
  exitCode @14 :Int32;       # exit
  exitSignal @15 :Int32;     # exit: the signal that ended it, else 0
  filename @16 :Text;        # exec
}

interface EventSink {
  # Events in order; `lost` events were lost just before them because this subscriber
  # fell behind.
  events @0 (events :List(Event), lost :UInt64) -> stream;
}

struct ObserveStatus {
  logSubscribers @0 :UInt64;
  statsSubscribers @1 :UInt64;
  outputSubscribers @2 :UInt64;
  eventSubscribers @3 :UInt64;
  eventsAvailable @4 :Bool;
  eventsUnavailable @5 :Text;   # why not
  eventsSubmitted @6 :UInt64;   # written to the kernel ring buffer
  eventsLostRingbuf @7 :UInt64; # ring buffer full
  eventsConsumed @8 :UInt64;    # read from it
  eventsLostActor @9 :UInt64;   # the observe actor was behind
  eventsSeen @10 :UInt64;       # reached the observe actor
  eventsDelivered @11 :UInt64;  # handed to subscribers
  eventsLostSubscribers @12 :UInt64;  # dropped from subscriber queues
  logEntriesSeen @13 :UInt64;
  logEntriesDropped @14 :UInt64;
}

interface Observe {
  # Streams daemon log entries at `level` or above into `sink`: first up to `tail`
  # recent entries, then (if `follow`) new ones until the caller cancels. Returns
  # when the history is sent and `follow` is false.
  daemonLogs @0 (level :LogLevel, follow :Bool, tail :UInt32, sink :LogSink) -> ();

  # Samples usage every `intervalMs` (10..3600000) until the caller cancels; the first
  # sample at once. Missing cell: cyto.not_found; returns (with that error) if the cell
  # goes away.
  stats @1 (target :StatsTarget, intervalMs :UInt64, sink :StatsSink) -> ();

  # An executable's output: the lines in its files (if `fromStart`), then, if `follow`,
  # new lines until it exits, with no gap or repeat at the seam. With `both`, the
  # history is stdout's then stderr's; live lines come interleaved as written.
  # Only lines seen at or after `sinceNanos` and (if not 0) at or before `untilNanos`
  # (Unix times; following ends there), and of the history only the last `tail` lines
  # (-1: all).
  output @2 (cell :Text, executable :Text, which :OutputStream, follow :Bool,
             fromStart :Bool, sink :OutputSink, sinceNanos :Int64, untilNanos :Int64,
             tail :Int64 = -1) -> ();

  # Signals generated for processes matching `filter`, until the caller cancels.
  signals @3 (filter :EventFilter, sink :EventSink) -> ();

  # exec, exit (code or signal) and OOM kills of processes matching `filter`.
  processEvents @4 (filter :EventFilter, sink :EventSink) -> ();

  # Subscriber counts and event pipeline counters.
  status @5 () -> (status :ObserveStatus);
}
