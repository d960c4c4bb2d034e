"""Files and folders in places other users may write to: never followed through a link.

The data folder (snapshots) and the pre-fork run folder under ``$TMPDIR`` can hold
entries someone else planted. A symlink there could make us serve a file we can read
and they cannot, or overwrite a file through it. So we create only new files
(``O_EXCL | O_NOFOLLOW``, mode 0600), read only regular files (``O_NOFOLLOW``, then
``fstat``), and use a private folder only after ``lstat`` shows it is ours, not a link.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from .errors import ConfigError

__all__ = ["create_private", "is_regular_file", "private_folder", "read_regular_file"]

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


def create_private(path: str, data: bytes) -> None:
    """Write ``data`` to a new file at ``path``, mode 0600; ``FileExistsError`` if anything
    (a file, a link, even a dangling one) is there already."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as file:
        file.write(data)


def is_regular_file(path: str) -> bool:
    """True for a regular file itself, False for a link (to anything), a folder, nothing."""
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


def read_regular_file(path: str) -> bytes:
    """The content of a regular file; ``FileNotFoundError`` for a link or anything else."""
    try:
        fd = os.open(path, os.O_RDONLY | _NOFOLLOW)
    except OSError as exc:  # ELOOP: a link
        raise FileNotFoundError(f"no regular file at {path!r}") from exc
    with os.fdopen(fd, "rb") as file:
        if not stat.S_ISREG(os.fstat(file.fileno()).st_mode):
            raise FileNotFoundError(f"no regular file at {path!r}")
        return file.read()


def private_folder(folder: Path) -> Path:
    """``folder``, created mode 0700 if missing; a ``ConfigError`` unless it is a real folder
    of this user that nobody else can enter."""
    try:
        folder.mkdir(mode=0o700)
    except FileExistsError:
        pass
    except OSError as exc:
        raise ConfigError(f"cannot create {str(folder)!r} ({exc.strerror or exc})") from None
    info = os.lstat(folder)
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
        problem = "is a symbolic link" if stat.S_ISLNK(info.st_mode) else "is not a folder"
    elif info.st_uid != os.getuid():
        problem = f"belongs to uid {info.st_uid}, not {os.getuid()}"
    elif stat.S_IMODE(info.st_mode) & 0o077:
        problem = f"has mode {stat.S_IMODE(info.st_mode):o}, not 700"
    else:
        return folder
    raise ConfigError(
        f"{str(folder)!r} {problem}, so another user could reach our control sockets;"
        " remove it (or set XDG_RUNTIME_DIR to a private folder) and start again"
    )
