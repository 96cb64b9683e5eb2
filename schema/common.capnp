@0xc4f1a7d3e2b09a11;
# Types shared by every cyto service.
$import "/capnp/c++.capnp".namespace("cyto::schema");

# Every failure of a cyto call reaches the client as a Cap'n Proto exception whose
# description starts with "cyto.<code>: " where <code> is the snake_case name below
# (for example "cyto.not_found: cell web"). The numbers are pinned: they cross the
# wire and match cyto::errc in bus/errc.hpp.
enum ErrorCode {
  ok @0;
  notFound @1;            # the named thing does not exist
  alreadyExists @2;       # a thing with that name exists already
  invalidArgument @3;     # the request is malformed or out of range
  permissionDenied @4;    # the caller may not do this
  resourceExhausted @5;   # a limit was reached (queue, memory, ids)
  unavailable @6;         # the service or a dependency cannot answer now
  internal @7;            # a bug or an unexpected kernel answer
  failedPrecondition @8;  # the system is not in a state that allows this
  unsupported @9;         # this host or build cannot do this
  cancelled @10;          # the call was cancelled
  timeout @11;            # the call took longer than allowed
}

# A point in time as nanoseconds since the Unix epoch.
struct Timestamp {
  unixNanos @0 :Int64;
}
