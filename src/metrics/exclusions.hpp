#pragma once

#include <string_view>

// Which filesystems the probe and parse_filesystems() leave out; the probe's shell `case`
// patterns are generated from these lists, so the two cannot disagree.
namespace healer::metrics::exclusions {

/// node_exporter's default --collector.filesystem.fs-types-exclude.
inline constexpr std::string_view kPseudoFsTypes[] = {
    "autofs",   "binfmt_misc", "bpf",     "cgroup",    "cgroup2",    "configfs",   "debugfs",
    "devpts",   "devtmpfs",    "fusectl", "hugetlbfs", "iso9660",    "mqueue",     "nsfs",
    "overlay",  "proc",        "procfs",  "pstore",    "rpc_pipefs", "securityfs", "selinuxfs",
    "squashfs", "erofs",       "sysfs",   "tracefs"};

/// Network filesystems: stat() on one whose server is gone can hang, so healer never stats them.
inline constexpr std::string_view kNetworkFsTypes[] = {
    "nfs",  "nfs4",      "cifs",           "smb3",       "smbfs", "ncpfs",     "afs",   "9p",
    "ceph", "glusterfs", "fuse.glusterfs", "fuse.sshfs", "sshfs", "fuse.s3fs", "davfs", "lustre"};

/// A mount point prefix node_exporter excludes by default
/// (--collector.filesystem.mount-points-exclude).
struct MountPrefix {
  std::string_view path;
  bool itself;  ///< the prefix itself is excluded too, not only what is below it
};

inline constexpr MountPrefix kMountPrefixes[] = {
    {"/dev", true},
    {"/proc", true},
    {"/sys", true},
    {"/run/credentials", false},
    {"/var/lib/docker", false},
    {"/var/lib/containers/storage", false},
};

}  // namespace healer::metrics::exclusions
