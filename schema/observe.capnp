@0xe7c3b5a1d9f20804;
# ObserveService: streams of what the node does. This slice: the daemon's own log.
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

interface Observe {
  # Streams daemon log entries at `level` or above into `sink`: first up to `tail`
  # recent entries, then (if `follow`) new ones until the caller cancels. Returns
  # when the history is sent and `follow` is false.
  daemonLogs @0 (level :LogLevel, follow :Bool, tail :UInt32, sink :LogSink) -> ();
}
