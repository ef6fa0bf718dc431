"""Is a project on a network share? SQLite's file locking is unreliable over NFS and SMB/CIFS:
two workstations writing one project there can corrupt it, and even one may lose a commit when
the share drops. A project found there is not written until the user chooses (copy it to this
computer, share the work with labelling packs, or open it anyway).

Detection: Linux reads the mount table (``/proc/mounts``) and takes the file system type of the
longest mount point containing the path; Windows asks ``GetDriveTypeW`` (``DRIVE_REMOTE``) and
treats UNC paths (``\\\\server\\share``) as network; macOS asks ``statfs`` for ``f_fstypename``.
Each reader can be replaced by a caller (tests inject a mount table).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Callable, Optional

#: file system types that live on another machine (Linux names; macOS ones below)
NETWORK_TYPES = frozenset({
    "nfs", "nfs4", "cifs", "smb", "smbfs", "smb3", "ncpfs", "afs", "coda", "9p", "ceph", "glusterfs",
    "lustre", "gpfs", "beegfs", "fuse.sshfs", "sshfs", "fuse.glusterfs", "fuse.cephfs", "davfs", "fuse.davfs2",
    "fuse.rclone", "fuse.s3fs", "afpfs", "webdav", "fuse.smbnetfs",
})

MOUNTS_FILE = Path("/proc/mounts")


def _unescape(field: str) -> str:
    """/proc/mounts writes space, tab, newline and backslash in octal (\\040 ...)."""
    for code, char in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
        field = field.replace(code, char)
    return field


def linux_filesystem_type(path: Path, mounts_text: Optional[str] = None) -> Optional[str]:
    """Type of the file system holding ``path`` according to the mount table (None if unknown)."""
    if mounts_text is None:
        try:
            mounts_text = MOUNTS_FILE.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return None
    target = str(path)
    best, best_type = "", None
    for line in mounts_text.splitlines():
        parts = line.split()
        if len(parts) < 3:
            continue
        mount_point, fs_type = _unescape(parts[1]), parts[2]
        prefix = mount_point.rstrip("/") + "/"
        if (target == mount_point or target.startswith(prefix) or mount_point == "/") and len(mount_point) >= len(best):
            best, best_type = mount_point, fs_type
    return best_type


def windows_network_drive(path: Path) -> Optional[str]:
    text = str(path)
    if text.startswith("\\\\") or text.startswith("//"):
        return "network path (UNC)"
    try:
        import ctypes

        root = os.path.splitdrive(text)[0] + "\\"
        DRIVE_REMOTE = 4
        if ctypes.windll.kernel32.GetDriveTypeW(ctypes.c_wchar_p(root)) == DRIVE_REMOTE:  # type: ignore[attr-defined]
            return "network drive"
    except (OSError, AttributeError, ValueError):
        return None
    return None


def macos_filesystem_type(path: Path) -> Optional[str]:
    """``f_fstypename`` from statfs(2) (64-bit inode layout)."""
    try:
        import ctypes
        import ctypes.util

        class StatFs(ctypes.Structure):
            _fields_ = [
                ("f_bsize", ctypes.c_uint32), ("f_iosize", ctypes.c_int32), ("f_blocks", ctypes.c_uint64),
                ("f_bfree", ctypes.c_uint64), ("f_bavail", ctypes.c_uint64), ("f_files", ctypes.c_uint64),
                ("f_ffree", ctypes.c_uint64), ("f_fsid", ctypes.c_int32 * 2), ("f_owner", ctypes.c_uint32),
                ("f_type", ctypes.c_uint32), ("f_flags", ctypes.c_uint32), ("f_fssubtype", ctypes.c_uint32),
                ("f_fstypename", ctypes.c_char * 16), ("f_mntonname", ctypes.c_char * 1024),
                ("f_mntfromname", ctypes.c_char * 1024), ("f_flags_ext", ctypes.c_uint32),
                ("f_reserved", ctypes.c_uint32 * 7),
            ]

        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        function = getattr(libc, "statfs$INODE64", None) or libc.statfs
        buffer = StatFs()
        if function(os.fsencode(str(path)), ctypes.byref(buffer)) != 0:
            return None
        return buffer.f_fstypename.decode(errors="replace")
    except (OSError, AttributeError, ValueError):
        return None


def network_share(path: Path | str, mounts_text: Optional[str] = None, platform: Optional[str] = None,
                  type_of: Optional[Callable[[Path], Optional[str]]] = None) -> Optional[str]:
    """A short description of the network file system holding ``path`` ("nfs4", "cifs", "network
    drive"...), or None when it is local or cannot be told. ``mounts_text``, ``platform`` and
    ``type_of`` replace the system's answers (tests)."""
    path = Path(path)
    try:
        resolved = path.resolve()
    except OSError:
        resolved = path.absolute()
    probe = resolved if resolved.exists() else resolved.parent
    platform = platform or sys.platform
    if type_of is not None:
        kind = type_of(probe)
    elif platform.startswith("win"):
        return windows_network_drive(path if str(path).startswith(("\\\\", "//")) else probe)
    elif platform == "darwin":
        kind = macos_filesystem_type(probe)
    else:
        kind = linux_filesystem_type(probe, mounts_text)
    if kind is None:
        return None
    return kind if kind.lower() in NETWORK_TYPES or kind.lower().startswith(("nfs", "smb", "cifs")) else None


def network_share_message(path: Path | str, kind: str) -> str:
    return (f"{Path(path).name} is on a network share ({kind}), where SQLite's file locking is unreliable: "
            "copy it to this computer, or share the work between workstations with labelling packs "
            "(inspector pack / inspector merge)")
