"""Network-share detection from an injected mount table, and the CLI refusing to write there."""

from __future__ import annotations

from pathlib import Path

import pytest

from inspector.cli import main
from inspector.core import filesystems
from inspector.core.filesystems import network_share


def mounts(*entries: tuple[str, str]) -> str:
    lines = ["/dev/sda1 / ext4 rw,relatime 0 0", "proc /proc proc rw 0 0"]
    lines += [f"server:/export {point.replace(' ', chr(92) + '040')} {kind} rw 0 0" for point, kind in entries]
    return "\n".join(lines) + "\n"


def test_linux_mount_table(tmp_path):
    share = tmp_path / "line 3 share"
    share.mkdir()
    (share / "local").mkdir()
    table = mounts((str(share), "nfs4"), (str(share / "local"), "ext4"), (str(tmp_path / "smb"), "cifs"))
    assert network_share(share / "p.inspector", mounts_text=table, platform="linux") == "nfs4"
    assert network_share(share / "local" / "p.inspector", mounts_text=table, platform="linux") is None
    assert network_share(tmp_path / "smb" / "x" / "p.inspector", mounts_text=table, platform="linux") == "cifs"
    assert network_share(tmp_path / "elsewhere.inspector", mounts_text=table, platform="linux") is None
    # a mount point that is only a name prefix does not count
    assert network_share(Path(str(share) + "x") / "p.inspector", mounts_text=table, platform="linux") is None


def test_other_platforms():
    assert network_share(Path("//server/share/p.inspector"), platform="win32") == "network path (UNC)"
    assert network_share(Path("/Volumes/qa/p.inspector"), platform="darwin", type_of=lambda p: "smbfs") == "smbfs"
    assert network_share(Path("/Users/qa/p.inspector"), platform="darwin", type_of=lambda p: "apfs") is None


def test_this_machine_answers_without_error(tmp_path):
    assert network_share(tmp_path / "p.inspector") in (None, *filesystems.NETWORK_TYPES)


@pytest.fixture
def share_project(tmp_path, small_image_folder, monkeypatch, capsys) -> Path:
    share = tmp_path / "share"
    share.mkdir()
    project = share / "p.inspector"
    assert main(["new", str(project), "--images", str(small_image_folder), "--quiet", "--workers", "1"]) == 0
    table = tmp_path / "mounts"
    table.write_text(mounts((str(share), "nfs")))
    monkeypatch.setattr(filesystems, "MOUNTS_FILE", table)
    monkeypatch.setattr(filesystems.sys, "platform", "linux")
    capsys.readouterr()
    return project


def test_cli_refuses_to_write_on_a_share_until_allowed(share_project, tmp_path, small_image_folder, capsys):
    before = share_project.read_bytes()
    for argv in (["label", str(share_project), "ok/part_001.png", "ok"], ["train", str(share_project)],
                 ["new", str(tmp_path / "share" / "q.inspector"), "--images", str(small_image_folder)]):
        code = main(argv)
        err = capsys.readouterr().err
        lines = [line for line in err.splitlines() if line.startswith("inspector:")]
        assert code == 1 and len(lines) == 1 and "network share (nfs)" in lines[0] and "Traceback" not in err, argv
    assert share_project.read_bytes() == before
    assert not (tmp_path / "share" / "q.inspector").exists()
    assert main(["info", str(share_project)]) == 0  # reading is safe
    assert main(["label", str(share_project), "ok/part_001.png", "ok", "--allow-network-share"]) == 0
