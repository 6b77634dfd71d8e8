# The metrics probe as it was before the one-awk probe (git show deb905f:src/metrics/probe.cpp),
# kept for metrics_test: the new probe must give the same series. @MARKER@ and @PROC@ are
# replaced by the test.
M='@MARKER@'
P='@PROC@'
hm_section() {
  hm_name=$1; hm_version=$2; shift 2
  printf '%s begin %s %s\n' "$M" "$hm_name" "$hm_version"
  printf '%s begin %s %s\n' "$M" "$hm_name" "$hm_version" >&2
  ( "$@" )
  hm_rc=$?
  printf '\n%s end %s %s\n' "$M" "$hm_name" "$hm_rc"
}
# busybox has no getconf; USER_HZ is 100 on every Linux port in use.
hm_clk_tck() {
  getconf CLK_TCK 2>/dev/null || echo 100
}
hm_uname() {
  uname -s && uname -r && uname -v && uname -m && uname -n
}
hm_filesystems() {
  while read -r hm_dev hm_mnt hm_fs hm_rest; do
    case $hm_fs in autofs|binfmt_misc|bpf|cgroup|cgroup2|configfs|debugfs|devpts|devtmpfs|fusectl|hugetlbfs|iso9660|mqueue|nsfs|overlay|proc|procfs|pstore|rpc_pipefs|securityfs|selinuxfs|squashfs|erofs|sysfs|tracefs|nfs|nfs4|cifs|smb3|smbfs|ncpfs|afs|9p|ceph|glusterfs|fuse.glusterfs|fuse.sshfs|sshfs|fuse.s3fs|davfs|lustre) continue ;; esac
    case $hm_mnt in /dev|/dev/*|/proc|/proc/*|/sys|/sys/*|/run/credentials/?*|/var/lib/docker/?*|/var/lib/containers/storage/?*) continue ;; esac
    case $hm_mnt in *\\*) hm_path=$(printf '%b' "$hm_mnt") ;; *) hm_path=$hm_mnt ;; esac
    if hm_figures=$(stat -f -c '%S %b %f %a %c %d' "$hm_path" 2>/dev/null); then
      printf '%s %s %s %s\n' "$hm_dev" "$hm_mnt" "$hm_fs" "$hm_figures"
    else
      printf '%s %s %s -\n' "$hm_dev" "$hm_mnt" "$hm_fs"
    fi
  done < "$P/mounts"
}
hm_section clk_tck 1 hm_clk_tck
hm_section stat 1 cat "$P/stat"
hm_section loadavg 1 cat "$P/loadavg"
hm_section meminfo 1 cat "$P/meminfo"
hm_section vmstat 1 cat "$P/vmstat"
hm_section filefd 1 cat "$P/sys/fs/file-nr"
hm_section diskstats 1 cat "$P/diskstats"
hm_section netdev 1 cat "$P/net/dev"
hm_section filesystems 1 hm_filesystems
hm_section uname 1 hm_uname
hm_section time 1 date +%s
exit 0
