#pragma once
// Root disks of VMs booted from an image: the image's root file system as one ext4 file
// (mke2fs -d), cached per image digest and never written, and per VM a qcow2 overlay
// backed by it (qemu-img) that takes the guest's writes. Blocking plain code: the vms
// actor runs the slow part (mke2fs) on a thread of its own.

#include <string>
#include <vector>

#include <caf/error.hpp>
#include <caf/expected.hpp>

#include "bus/vms.hpp"

namespace cyto::vms {

/// The label of every image root disk: the boot initramfs mounts the disk so labelled.
inline constexpr const char* root_disk_label = "cyto-root";
/// Where a disk build mounts the image's root file system: <disk dir>/<this><hex>.
inline constexpr const char* disk_mount_prefix = ".mnt-";

/// `tool` as an absolute path: itself when it holds a '/', else found in PATH.
/// cyto.unavailable naming the Debian `package` when missing; `what` names it there.
caf::expected<std::string> find_tool(const std::string& tool, const std::string& package,
                                     const std::string& what);

/// Runs argv (argv[0] absolute) with stdin /dev/null and waits; a failure carries its
/// output's tail. `what` says what was being done.
caf::error run_tool(const std::vector<std::string>& argv, const std::string& what);

/// The disk cache's file name of an image digest ("sha256:<hex>" -> "<hex>.ext4").
caf::expected<std::string> disk_file_name(const std::string& digest);

/// Makes `disk`, an ext4 (label root_disk_label) holding the tree at `root` with room
/// to spare, with `mke2fs`: built as a temp file beside it, then renamed, so that on any
/// error nothing is left.
caf::error build_ext4(const std::string& mke2fs, const std::string& root, const std::string& disk);

/// Makes `overlay`, a qcow2 whose backing file is the raw `disk` (opened read-only by
/// QEMU: the guest's writes land in the overlay).
caf::error make_overlay(const std::string& qemu_img, const std::string& disk,
                        const std::string& overlay);

/// What an image VM runs, from the image config (JSON): Entrypoint + (`args` if given,
/// else Cmd), Env (a default PATH when it sets none) and WorkingDir ("/" by default).
/// invalid_argument when that is no command.
caf::expected<vm_image_root> guest_command(const std::string& config_json,
                                           const std::vector<std::string>& args);

/// The arguments the boot initramfs's /init takes (deploy/make-vm-boot):
/// -w WORKDIR, -e KEY=VALUE for each env entry, --cmd, then the command (not "--": the
/// kernel ends init's arguments at a second "--").
std::vector<std::string> boot_init_args(const vm_image_root& root);

/// Removes what an interrupted build left in the disk cache `dir` (temp files, mount
/// point dirs); unmounted dirs only.
void clean_disk_dir(const std::string& dir);

} // namespace cyto::vms
