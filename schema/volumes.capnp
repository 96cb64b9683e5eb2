@0xe339cb390eae047e;
# VolumeService: named volumes, directories of the node's state dir that containers mount
# (`cyto run -v NAME:/path`) and that outlive them.
$import "/capnp/c++.capnp".namespace("cyto::schema");

struct VolumeUser {
  id @0 :Text;            # the container's id (64 hex digits)
  name @1 :Text;          # its name
}

struct VolumeInfo {
  name @0 :Text;
  path @1 :Text;          # the host directory containers mount: <state>/volumes/<name>/_data
  createdUnixNanos @2 :Int64;
  users @3 :List(VolumeUser);  # containers (running or not, until removed) that use it
}

interface Volumes {
  # Makes a volume; an empty name gets a generated one (64 hex digits). A container's
  # `-v NAME:/path` makes a missing volume itself.
  create @0 (name :Text) -> (info :VolumeInfo);
  list @1 () -> (volumes :List(VolumeInfo));
  inspect @2 (name :Text) -> (info :VolumeInfo);
  # Removes a volume and its data; refused (cyto.failed_precondition) while any container
  # uses it, with force too. force: a volume that does not exist is no error.
  remove @3 (name :Text, force :Bool) -> ();
}
