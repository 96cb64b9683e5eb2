@0x8853040c592469bf;
# ContainerService and PodService: OCI containers made from images (each one a cell with
# a rootfs from the images service, run by cyto's own runtime) and pods (a parent cell
# whose pause process holds the network, ipc and uts namespaces its containers share).
$import "/capnp/c++.capnp".namespace("cyto::schema");

using Cells = import "cells.capnp";

using PortMapping = import "network.capnp".PortMapping;
using OutputSink = import "observe.capnp".OutputSink;
using PullSink = import "images.capnp".PullSink;

struct Mount {
  kind @0 :Text;          # "bind" (a host path), "volume" (a named volume), "tmpfs"
  source @1 :Text;        # the host path, the volume's name, or tmpfs's mode in octal
                          # (empty: 1777)
  target @2 :Text;        # absolute path in the container, no ".."
  readOnly @3 :Bool;
  sizeBytes @4 :UInt64;   # tmpfs: its size (0: the kernel's default)
}

struct RestartPolicy {
  mode @0 :Text;          # "no" (also empty), "on-failure", "always", "unless-stopped"
  maxRetries @1 :UInt32;  # on-failure: at most this many restarts since a user's last
                          # start (0: no limit)
}

struct ContainerSpec {
  name @0 :Text;          # [A-Za-z0-9][A-Za-z0-9_.-]{0,62}; empty: generated
  image @1 :Text;         # an image in the store (pull it first)
  entrypoint @2 :List(Text);  # replaces the image's Entrypoint when non-empty
  args @3 :List(Text);    # replaces the image's Cmd when non-empty
  env @4 :List(Text);     # KEY=VALUE over the image's Env
  workdir @5 :Text;
  user @6 :Text;          # uid[:gid] or a name in the image's /etc/passwd
  hostname @7 :Text;      # default: the name
  limits @8 :Cells.Cell;  # limits of the container's cell (its name is ignored)
  pod @9 :Text;           # join this pod's namespaces; the cell nests under the pod's
  network @10 :Text;      # attach to this network ("none": only lo; empty: the default network)
  ports @11 :List(PortMapping);
  autoRemove @12 :Bool;   # removed once it has exited
  readOnly @13 :Bool;     # read-only rootfs (with a writable /tmp)
  capAdd @14 :List(Text); # capabilities added to the default set
  sysctls @15 :List(Text); # key=value: net.* (its netns), kernel.shm*/msg*/sem, fs.mqueue.*
  mounts @16 :List(Mount);  # -v, --tmpfs
  restart @17 :RestartPolicy;
  tty @18 :Bool;          # a terminal for its process (-t)
  interactive @19 :Bool;  # its stdin kept open (-i)
}

enum ContainerState {
  created @0;
  running @1;
  stopped @2;
}

struct ContainerInfo {
  spec @0 :ContainerSpec;
  id @1 :Text;            # 64 hex digits
  state @2 :ContainerState;
  pid @3 :UInt32;         # host pid of its process (0 when stopped)
  exitCode @4 :Int32;     # 128+n when killed by signal n
  exitSignal @5 :Int32;
  error @6 :Text;         # why it stopped without running its program
  cell @7 :Text;          # its cell, and the cell executable that carries its output
  executable @8 :Text;
  imageName @9 :Text;
  imageDigest @10 :Text;
  bundle @11 :Text;
  command @12 :List(Text);  # what runs: entrypoint + cmd after the merge
  ips @13 :List(Text);
  createdUnixNanos @14 :Int64;
  startedUnixNanos @15 :Int64;
  finishedUnixNanos @16 :Int64;
  restartCount @17 :UInt32;  # how often its restart policy has started it again
}

struct ExecInfo {
  cell @0 :Text;          # the cell executable that runs the process: its output and
  executable @1 :Text;    # exit code come from the cells and observe services
  pid @2 :UInt32;
}

# The raw bytes of a container's terminal (attach with -t), in order.
interface ByteSink {
  write @0 (data :Data) -> stream;
  # The container has exited (or its attach socket closed): no more bytes come.
  done @1 ();
}

# A container's stdin while attached: the pty with -t, else a pipe (-i).
interface InputStream {
  write @0 (data :Data) -> stream;
  # End of input: the pipe is closed (EOF for the program); with -t, nothing happens.
  close @1 ();
  # The terminal's new size (TIOCSWINSZ on the pty); ignored without -t.
  resize @2 (rows :UInt16, cols :UInt16);
}

# Whether run pulls spec.image first (podman's --pull).
enum PullPolicy {
  missing @0;             # only when the store has no such image
  always @1;              # every time (the newest of the tag)
  never @2;               # never: a missing image is cyto.not_found
}

interface Containers {
  # Makes a container whose process waits for start; nothing is left on error.
  # Errors of the runtime carry "(exit code N)": 127 command not found, 126 not executable.
  create @0 (spec :ContainerSpec) -> (info :ContainerInfo);
  # Runs a created container's program (a stopped one runs again: see init); with wait,
  # returns once it has stopped.
  start @1 (name :Text, wait :Bool) -> (info :ContainerInfo);
  # create + start (+ wait), in one call: with `pull` the image is pulled first (progress
  # to `progress` if given; old clients send no policy: never); with `output` the
  # container's output (both streams, from its first line) goes there while it runs and
  # the answer comes once the last line was accepted. With wait, it answers once the
  # container has stopped (with spec.autoRemove: once it is removed); without, once it
  # runs. Anything this call made is removed again when it fails. The call going away
  # (client gone) leaves the container as it is: it runs to its end (and is removed
  # then with autoRemove).
  run @2 (spec :ContainerSpec, wait :Bool, pull :PullPolicy = never, output :OutputSink,
          progress :PullSink) -> (info :ContainerInfo);
  # Sends `signal` (0 = SIGTERM), SIGKILL after timeoutMs (0 = never); returns once stopped.
  stop @3 (name :Text, signal :Int32, timeoutMs :UInt32) -> (info :ContainerInfo);
  # Sends one signal (0 = SIGKILL) to a running container.
  kill @4 (name :Text, signal :Int32) -> ();
  # Removes a container; a running one only with force (it is killed).
  remove @5 (name :Text, force :Bool) -> ();
  list @6 () -> (containers :List(ContainerInfo));
  # By name or id prefix (at least 4 hex digits).
  inspect @7 (name :Text) -> (info :ContainerInfo);
  # Starts a process in a running container's namespaces and cell.
  # With tty or interactive, the process waits (10 s at most) for attach(name, output,
  # exec = info.executable) and runs on a terminal (tty) or with that stdin.
  exec @8 (name :Text, argv :List(Text), env :List(Text), cwd :Text, user :Text,
           tty :Bool, interactive :Bool)
       -> (info :ExecInfo);
  # Returns once the container has stopped.
  wait @9 (name :Text) -> (info :ContainerInfo);
  # Makes a stopped container created again (podman's init): the same id, rootfs and
  # bundle, a new process waiting for start, its network attached again, its log kept.
  # A created one is answered as it is. (start does this itself for a stopped one; init
  # lets a client follow the output of the new process from its first line.)
  init @10 (name :Text) -> (info :ContainerInfo);

  # -- terminals (-i, -t) --
  # Attaches to a created or running container made with -t or -i: its terminal's output
  # goes to `output` (with -t; the output of a container without a terminal is the
  # observe service's), `input` feeds its stdin. Detaching is dropping `input`: the
  # container runs on. Stopped: cyto.failed_precondition. Local node only. With `exec`
  # (an ExecInfo's executable), the terminal of that exec -i/-t process instead.
  attach @11 (name :Text, output :ByteSink, exec :Text) -> (input :InputStream);

  # -- copying files (cyto cp) --
  # Paths are in the container's root file system (relative ones from its /), resolved
  # inside it: a symlink or ".." never leads out. Created, running and stopped containers.
  # Paths on its -v/--tmpfs mounts are refused (cyto.failed_precondition).
  # Streams a tar of `path` to `sink`, then sink.done(): one top-level entry named after
  # the path's last component ("." for /), a symlink as a symlink, and for a directory
  # everything below it (modes, times, uid/gid; no device nodes or sockets). Errors of the
  # path come before any byte.
  copyOut @12 (name :Text, path :Text, sink :ByteSink) -> ();
  # Makes ready a copy to `path`: write the tar to `input`, then close(), which answers
  # once every entry is in place, or with the error (and then nothing was changed: the tar
  # is checked whole before the first entry is written). resize() is ignored.
  # source: what the tar holds (docker cp's rules for the destination):
  #   "file"       one non-directory entry: into `path` if it is a directory, else it
  #                becomes `path` (its parent must exist; a trailing / must be a directory)
  #   "directory"  a directory: into `path` if it is one, else it becomes `path`
  #   "contents"   a directory whose contents go into `path` (SRC/.), made if missing
  #   "archive"    any tar (cyto cp - C:PATH), unpacked into the directory `path`
  # Entries: regular files, directories, symlinks, hard links, fifos; no absolute names,
  # no "..", no device nodes, nothing written through a symlink; owned by root.
  copyIn @13 (name :Text, path :Text, source :Text) -> (input :InputStream);
}

struct PodSpec {
  name @0 :Text;          # also the pod's hostname
  limits @1 :Cells.Cell;  # limits of the pod's cell (its name is ignored)
  network @2 :Text;
  ports @3 :List(PortMapping);
}

struct PodInfo {
  spec @0 :PodSpec;
  cell @1 :Text;
  pausePid @2 :UInt32;    # host pid of the pause process (0 once stopped)
  running @3 :Bool;
  containers @4 :List(Text);
  ips @5 :List(Text);
  createdUnixNanos @6 :Int64;
}

interface Pods {
  create @0 (spec :PodSpec) -> (info :PodInfo);
  # Creates and starts a container in the pod (spec.pod is set to the pod).
  addContainer @1 (pod :Text, spec :ContainerSpec) -> (info :ContainerInfo);
  # Stops the pod's containers (SIGTERM, SIGKILL after timeoutMs), then the pod.
  stop @2 (name :Text, timeoutMs :UInt32) -> (info :PodInfo);
  # Removes a pod and its containers; refused while containers run unless force.
  remove @3 (name :Text, force :Bool) -> ();
  list @4 () -> (pods :List(PodInfo));
}
