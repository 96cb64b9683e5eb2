@0xa3d85e21c7f4b905;
# CellService: cgroup-limited, nestable process groups and the executables in them.
$import "/capnp/c++.capnp".namespace("cyto::schema");

using PortMapping = import "network.capnp".PortMapping;

struct CpuLimits {
  weight @0 :UInt64;      # 1..10000; 0 = unset (v1: cpu.shares = weight * 1024 / 100)
  maxQuotaUs @1 :UInt64;  # cpu.max quota in microseconds; 0 = unset
  maxPeriodUs @2 :UInt64; # cpu.max period; 0 = 100000
}

struct CpusetLimits {
  cpus @0 :Text;          # "0-1,3"; empty = inherit
  mems @1 :Text;
}

struct MemoryLimits {     # bytes; 0 = unset. min and low need cgroup v2.
  min @0 :UInt64;
  low @1 :UInt64;
  high @2 :UInt64;
  max @3 :UInt64;
}

struct IoDeviceLimit {
  device @0 :Text;        # "major:minor"
  rbps @1 :UInt64;
  wbps @2 :UInt64;
  riops @3 :UInt64;
  wiops @4 :UInt64;
}

struct IoLimits {
  weight @0 :UInt64;      # 1..10000; 0 = unset
  max @1 :List(IoDeviceLimit);
}

struct Cell {
  name @0 :Text;          # "parent/child" for nested cells
  cpu @1 :CpuLimits;
  cpuset @2 :CpusetLimits;
  memory @3 :MemoryLimits;
  pidsMax @4 :UInt64;     # 0 = unset
  io @5 :IoLimits;
  isolateProcess @6 :Bool;  # own pid (with /proc), uts, ipc and mount namespaces
  isolateNetwork @7 :Bool;  # own network namespace with only lo
  network @8 :Text;         # attach the cell to this CNI network (its processes join the netns)
  ports @9 :List(PortMapping);  # host ports forwarded into the cell (needs network)
}

struct Executable {
  name @0 :Text;          # unique among the cell's running executables; default: program name
  argv @1 :List(Text);
  command @2 :Text;       # run as /bin/sh -c command when argv is empty
  env @3 :List(Text);     # KEY=VALUE
  cwd @4 :Text;
  uid @5 :Int64 = -1;     # -1: cytod's own
  gid @6 :Int64 = -1;
  description @7 :Text;
}

struct ExitStatus {
  exited @0 :Bool;
  known @1 :Bool;         # false for processes re-adopted after a daemon restart
  code @2 :Int32;
  signal @3 :Int32;
}

struct ExecutableInfo {
  executable @0 :Executable;
  cellName @1 :Text;
  pid @2 :UInt32;         # host pid
  nsPid @3 :UInt32;       # pid inside the cell's pid namespace
  startedUnixNanos @4 :Int64;
  status @5 :ExitStatus;
  stdoutPath @6 :Text;
  stderrPath @7 :Text;
}

struct CellInfo {
  cell @0 :Cell;
  executables @1 :List(ExecutableInfo);
  pids @2 :List(UInt32);  # processes in the cell itself (its child cells list their own)
  cgroupPath @3 :Text;
  children @4 :List(CellInfo);
  ips @5 :List(Text);       # the cell's addresses on its network (CIDR)
  netnsPath @6 :Text;       # its network namespace, when attached
}

interface Cells {
  allocate @0 (cell :Cell) -> (info :CellInfo);
  # Removes a cell. recursive: also its child cells; force: kill its processes first.
  free @1 (name :Text, recursive :Bool, force :Bool) -> ();
  start @2 (cellName :Text, executable :Executable) -> (info :ExecutableInfo);
  # Sends `signal` (0 = SIGTERM), then SIGKILL after timeoutMs (0 = never); returns on exit.
  stop @3 (cellName :Text, executableName :Text, signal :Int32, timeoutMs :UInt32)
       -> (status :ExitStatus);
  # Top-level cells, each with its children nested.
  list @4 () -> (cells :List(CellInfo));
  get @5 (name :Text) -> (info :CellInfo);
  wait @6 (cellName :Text, executableName :Text) -> (status :ExitStatus);
}
