"""Large rich outputs as files in ``--assets-dir``: stored by worker threads,
served by the status server.

Everything here is untrusted content (a notebook made it), and the directory
may be shared with other users of the machine, so:

- a file is written under a fresh random temp name, created with ``O_EXCL``
  and ``O_NOFOLLOW`` (``tempfile.mkstemp``), then renamed into place: a
  planted symlink is never written through;
- a file is read with ``O_NOFOLLOW | O_NONBLOCK`` relative to the directory
  and only if it is a regular file: no symlink escapes, no FIFO that hangs;
- the directory is kept under ``--assets-max-bytes`` (oldest removed first)
  and, with ``--assets-retention``, files older than that are removed; both
  are checked each time an asset is stored.
"""

import base64
import hashlib
import logging
import mimetypes
import os
import re
import stat
import tempfile
import threading
import time

from .errors import AssetRejected

log = logging.getLogger(__name__)

#: Only names the store makes (a hash and an extension) are served or pruned.
ASSET_NAME = re.compile(r"^[0-9a-f]{32}\.[a-z0-9]{1,10}$")
_TEMP_PREFIX = ".tmp-"
#: A temp file this old is left over from a crash: removed when pruning.
_TEMP_MAX_AGE = 3600.0
_TEXT_TYPES = ("text/", "application/json", "application/javascript", "image/svg+xml")


def _is_text(mime):
    return mime.startswith(_TEXT_TYPES) or mime.endswith(("+json", "+xml"))


def _raw_bytes(mime, data):
    if _is_text(mime) or not isinstance(data, str):
        return data.encode("utf-8") if isinstance(data, str) else repr(data).encode()
    try:
        return base64.b64decode(data, validate=False)
    except ValueError:
        return data.encode("utf-8")


class AssetStore:
    """Large display data as files, named by content hash.

    ``max_bytes`` (0: no limit) bounds the directory, ``retention`` seconds
    (0: none) the age of its files; ``clock`` is ``time.time`` outside tests.
    """

    def __init__(self, directory, base_url=None, max_bytes=0, retention=0.0, clock=time.time):
        self.directory = directory
        self.base_url = base_url.rstrip("/") + "/" if base_url else None
        self.max_bytes = int(max_bytes or 0)
        self.retention = float(retention or 0.0)
        self._clock = clock
        # Worker threads store at the same time: one pruning pass at a time,
        # so two of them do not both remove "the oldest" file.
        self._prune_lock = threading.Lock()

    def put(self, mime, data):
        """Store ``data``; returns ``(name, url or None)``. Raises OSError
        (AssetRejected when it is larger than the whole quota)."""
        raw = _raw_bytes(mime, data)
        if self.max_bytes and len(raw) > self.max_bytes:
            raise AssetRejected("a %d-byte %s output is larger than --assets-max-bytes (%d)"
                                % (len(raw), mime, self.max_bytes))
        ext = mimetypes.guess_extension(mime.split(";")[0].strip()) or ".bin"
        name = hashlib.sha256(raw).hexdigest()[:32] + ext
        path = os.path.join(self.directory, name)
        os.makedirs(self.directory, exist_ok=True)
        try:
            info = os.lstat(path)
        except FileNotFoundError:
            info = None
        if info is not None and stat.S_ISREG(info.st_mode) and info.st_size == len(raw):
            os.utime(path, follow_symlinks=False)  # used again: it is young again
        else:
            self._write(path, name, raw)
        self.prune(keep=name)
        return name, (self.base_url + name if self.base_url else None)

    def _write(self, path, name, raw):
        fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=_TEMP_PREFIX, suffix=".part")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(raw)
            # Left 0600 (mkstemp's): only the status server, as this user,
            # reads them; the directory may be shared with other users.
            os.replace(tmp, path)  # rename never follows a symlink at ``path``
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise

    def prune(self, keep=None):
        """Remove files past the retention, then the oldest until under the quota."""
        if not self.max_bytes and not self.retention:
            return
        with self._prune_lock:
            self._prune(keep)

    def _prune(self, keep):
        now = self._clock()
        files = []
        try:
            entries = list(os.scandir(self.directory))
        except OSError as exc:
            log.warning("cannot list %s to keep it under its limits: %s", self.directory, exc)
            return
        for entry in entries:
            try:
                if not entry.is_file(follow_symlinks=False):
                    continue
                info = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if entry.name.startswith(_TEMP_PREFIX):
                if now - info.st_mtime > _TEMP_MAX_AGE:
                    self._remove(entry.name, "left over from an interrupted write")
                continue
            if ASSET_NAME.match(entry.name):
                files.append((info.st_mtime, entry.name, info.st_size))
        files.sort()
        total = sum(size for _, _, size in files)
        for mtime, name, size in files:
            if name == keep:
                continue
            too_old = self.retention and now - mtime > self.retention
            too_big = self.max_bytes and total > self.max_bytes
            if not (too_old or too_big):
                continue
            if self._remove(name, "older than --assets-retention" if too_old
                            else "--assets-max-bytes reached"):
                total -= size

    def _remove(self, name, why):
        try:
            os.unlink(os.path.join(self.directory, name))
        except FileNotFoundError:
            return True
        except OSError as exc:
            log.warning("cannot remove asset %s (%s): %s", name, why, exc)
            return False
        log.debug("removed asset %s: %s", name, why)
        return True


def open_asset(directory, name):
    """``(content type, open binary file, size)`` of a stored asset, or None:
    only names the store makes, only regular files, never through a symlink.
    The caller closes the file."""
    if not directory or not ASSET_NAME.match(name):
        return None
    try:
        dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
                     dir_fd=dir_fd)
    except OSError:
        return None
    finally:
        os.close(dir_fd)
    f = os.fdopen(fd, "rb")
    info = os.fstat(f.fileno())
    if not stat.S_ISREG(info.st_mode):
        f.close()
        return None
    return mimetypes.guess_type(name)[0] or "application/octet-stream", f, info.st_size


def read_asset(directory, name):
    """``(content type, bytes)`` of a stored asset, or None (see open_asset)."""
    found = open_asset(directory, name)
    if found is None:
        return None
    ctype, f, _size = found
    with f:
        return ctype, f.read()
