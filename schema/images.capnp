@0x96e0fcea972c73c4;
# ImageService: OCI images pulled from registries or imported, their content store and
# layer snapshots, and root file systems (overlay mounts) prepared from them.
$import "/capnp/c++.capnp".namespace("cyto::schema");

struct ImageLayer {
  digest @0 :Text;        # the blob as pulled (compressed)
  mediaType @1 :Text;
  size @2 :UInt64;
  diffId @3 :Text;        # digest of the uncompressed tar
  chainId @4 :Text;       # the snapshot's key
}

struct Image {
  name @0 :Text;          # "registry/repository:tag"
  digest @1 :Text;        # what the name resolved to (manifest or index)
  manifestDigest @2 :Text;  # the platform's image manifest
  mediaType @3 :Text;
  configDigest @4 :Text;
  os @5 :Text;
  architecture @6 :Text;
  variant @7 :Text;
  created @8 :Text;       # from the config (RFC 3339)
  size @9 :UInt64;        # bytes of config + layer blobs
  layers @10 :List(ImageLayer);
  config @11 :Text;       # the image config JSON
  pulledUnixNanos @12 :Int64;
  inUse @13 :UInt32;      # root file systems prepared from it now
}

enum LayerPhase {
  waiting @0;
  downloading @1;
  verifying @2;
  extracting @3;
  done @4;
  exists @5;              # already in the store: not fetched
}

struct LayerProgress {
  digest @0 :Text;
  phase @1 :LayerPhase;
  current @2 :UInt64;     # bytes so far
  total @3 :UInt64;
}

# Implemented by the client; the daemon pushes each blob's progress while pulling.
interface PullSink {
  progress @0 (layer :LayerProgress) -> stream;
}

struct PruneReport {
  blobs @0 :UInt32;
  snapshots @1 :UInt32;
  bytes @2 :UInt64;
}

struct Rootfs {
  id @0 :Text;
  image @1 :Text;
  manifestDigest @2 :Text;
  target @3 :Text;
  lowerDirs @4 :List(Text);  # top layer first
  upperDir @5 :Text;
  workDir @6 :Text;
}

interface Images {
  # Pulls `ref` ("[registry/]repo[:tag][@sha256:...]") for `platform` ("os/arch[/variant]",
  # empty = linux/amd64), streaming progress into `sink` (may be null), then returns it.
  pull @0 (ref :Text, platform :Text, sink :PullSink) -> (image :Image);
  list @1 () -> (images :List(Image));
  # By name, short name, or digest (prefix of at least 6 hex digits).
  inspect @2 (ref :Text) -> (image :Image);
  # Refused (failed_precondition) while a rootfs uses the image, unless `force`.
  remove @3 (ref :Text, force :Bool) -> ();
  # An OCI layout directory or oci-archive tar on the daemon's host; `name` renames a
  # single image (default: its ref.name annotation).
  import @4 (path :Text, name :Text) -> (images :List(Image));
  # Removes blobs and snapshots no image and no rootfs refers to.
  prune @5 () -> (report :PruneReport);
  # Mounts an overlay of the image's snapshots with a private upper dir on `target`,
  # which must be inside cyto's state dir unless outsideStateDir (root over the unix
  # socket only; cyto.permission_denied otherwise). The caller owns the mount.
  mount @6 (ref :Text, id :Text, target :Text, outsideStateDir :Bool) -> (rootfs :Rootfs);
  # Only the mount's owner may (root over the unix socket: any mount made through the API;
  # containers' and VMs' root file systems go with them).
  unmount @7 (id :Text) -> ();
  mounts @8 () -> (rootfs :List(Rootfs));
}
