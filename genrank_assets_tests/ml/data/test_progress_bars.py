"""`genrank demo-data` draws a tqdm bar when a person watches a terminal, and none into a pipe or a log file."""
import fcntl
import os
import pty
import struct
import subprocess
import sys
import termios
from pathlib import Path

GENRANK = [sys.executable, "-m", "genrank_assets.tools.cli"]


def _env() -> dict:
    env = dict(os.environ)
    env.pop("TQDM_DISABLE", None)
    return env


def test_no_bar_when_stderr_is_not_a_terminal(tmp_path: Path):
    out = subprocess.run([*GENRANK, "demo-data", "--out", str(tmp_path / "d"), "--playlists", "5000"],
                         capture_output=True, text=True, env=_env(), check=True)
    assert "playlists/s" not in out.stderr and "\r" not in out.stderr and "%|" not in out.stderr
    assert '"playlists": 5000' in out.stdout  # the stats JSON, as before


def test_a_bar_when_stderr_is_a_terminal(tmp_path: Path):
    leader, follower = pty.openpty()
    # A terminal 100 columns wide: a fresh pty has 0, where tqdm draws an empty line.
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    try:
        proc = subprocess.run([*GENRANK, "demo-data", "--out", str(tmp_path / "d"), "--playlists", "5000"],
                              stdout=subprocess.PIPE, stderr=follower, env=_env(), check=True)
        os.close(follower)
        follower = -1
        seen = b""
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: the writer is gone and everything was read
                break
            if not chunk:
                break
            seen += chunk
    finally:
        if follower >= 0:
            os.close(follower)
        os.close(leader)
    assert b"playlists" in seen and b"%|" in seen, seen[-500:]
    assert b'"playlists": 5000' in proc.stdout
