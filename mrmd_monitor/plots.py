"""Plots where the mrmd editor puts them, so that a notebook run through the
monitor shows its figures as one the editor ran itself.

The editor (mrmd-electron 0.5.4) saves each image of a run under the
project's ``_assets/generated/`` (a runtime's asset under the name the
runtime gave it, e.g. ``<execId>_0001.png``) and shows it with an
``![plot-N](<path from the notebook's directory>)`` line after the output
block. ``PlotKeeper`` does the saving part, on worker threads: for each image
item of a run it adds where a person can see it, ``imagePath`` (relative to
the project root) or ``imageUrl``:

1. with ``--project-root``: the file under ``<root>/_assets/generated/``;
2. else with ``--assets-dir`` served by the status server: that URL;
3. else, for an image the runtime serves itself: the runtime's URL (good
   while the runtime runs);
4. else nothing: the image stays in the entry's ``displayData`` only.

Everything here is untrusted (a notebook made it): names are reduced to
``[A-Za-z0-9._-]``, downloads are bounded in size and time and never follow
redirects, and a file is never written through a symlink nor over an
existing one (a new file is linked into place, which fails if the name is
taken).
"""

import base64
import binascii
import hashlib
import logging
import os
import posixpath
import re
import secrets
import stat
import time
from typing import Optional
from urllib.parse import unquote, urlsplit

from .http import new_session
from .httpbody import iter_body

log = logging.getLogger(__name__)

#: Image types shown by an image line, and the extension each is saved with.
IMAGE_TYPES = {"image/png": ".png", "image/jpeg": ".jpg", "image/gif": ".gif",
               "image/svg+xml": ".svg", "image/webp": ".webp"}
GENERATED = ("_assets", "generated")
#: Largest image kept (a download stops there).
MAX_PLOT_BYTES = 32 * 1024 * 1024
#: A download of one image takes at most this long in all.
FETCH_SECONDS = 60.0
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_MAX_NAME = 120
_MAX_TRIES = 1000


def safe_name(name: str, mime: str, raw: bytes) -> str:
    """A file name made only of ``[A-Za-z0-9._-]``, not hidden, with the
    extension of ``mime``; from the content's hash when nothing is left."""
    ext = IMAGE_TYPES[mime]
    base = _UNSAFE.sub("-", name).lstrip(".-")[:_MAX_NAME]
    if base.lower().endswith(ext) or (ext == ".jpg" and base.lower().endswith(".jpeg")):
        return base
    base = base.rsplit(".", 1)[0] if "." in base else base
    return (base or "plot-" + hashlib.sha256(raw).hexdigest()[:16]) + ext


class PlotKeeper:
    """Saves a run's images where the editor would (see the module's doc).

    ``store``: the AssetStore of ``--assets-dir`` (its URLs served by the
    status server), or None.
    """

    def __init__(self, project_root: Optional[str] = None, store=None,
                 max_bytes: int = MAX_PLOT_BYTES, fetch_seconds: float = FETCH_SECONDS,
                 session_factory=new_session):
        self.project_root = project_root
        self.store = store if store is not None and store.base_url else None
        self.max_bytes = max_bytes
        self.fetch_seconds = fetch_seconds
        self._session_factory = session_factory

    @property
    def active(self) -> bool:
        return bool(self.project_root or self.store)

    def keep(self, item: dict, raw: Optional[bytes] = None) -> dict:
        """``item`` with ``imagePath`` or ``imageUrl`` when it is an image
        that can be shown; ``raw`` its bytes when known (inline data)."""
        mime = item.get("mimeType")
        if mime not in IMAGE_TYPES:
            return item
        url = item.get("url") if item.get("assetId") and not item.get("data") else None
        if not self.active:
            # Only what the runtime serves can be pointed at.
            return dict(item, imageUrl=url) if url and raw is None else item
        try:
            if raw is None:
                if not url:
                    return item
                raw = self._fetch(url)
            if self.project_root:
                name = posixpath.basename(urlsplit(url).path) if url else ""
                return dict(item, imagePath=self._save(unquote(name), mime, raw))
            _asset_id, stored = self.store.put(mime, base64.b64encode(raw).decode("ascii"))
            return dict(item, imageUrl=stored)
        except (OSError, ValueError) as exc:
            log.warning("cannot keep a %s plot%s: %s", mime, " from " + url if url else "", exc)
            # Said in its image line, where the person looking for the plot is.
            return dict(item, imageError=_reason(exc))

    def inline_bytes(self, mime: str, data) -> Optional[bytes]:
        """The bytes of inline image data (base64, or text for SVG), or None."""
        if mime not in IMAGE_TYPES or not isinstance(data, str):
            return None
        if mime == "image/svg+xml":
            return data.encode("utf-8")
        try:
            return base64.b64decode(data, validate=False)
        except (binascii.Error, ValueError):
            return None

    def _fetch(self, url: str) -> bytes:
        deadline = time.monotonic() + self.fetch_seconds
        session = self._session_factory()
        try:
            response = session.get(url, stream=True, allow_redirects=False, timeout=(10.0, 30.0),
                                   headers={"Accept-Encoding": "identity"})
            try:
                if response.status_code != 200:
                    raise ValueError("the runtime answered HTTP %d" % response.status_code)
                out = bytearray()
                for piece in iter_body(response, 65536):
                    out += piece
                    if len(out) > self.max_bytes:
                        raise ValueError("larger than %d bytes" % self.max_bytes)
                    if time.monotonic() > deadline:
                        raise ValueError("took longer than %g s" % self.fetch_seconds)
                return bytes(out)
            finally:
                response.close()
        except OSError:
            raise
        except Exception as exc:  # requests' errors: said as what went wrong
            raise ValueError(str(exc)) from exc
        finally:
            session.close()

    def _save(self, name: str, mime: str, raw: bytes) -> str:
        """Save ``raw`` as ``_assets/generated/<name>`` (or ``<name>-N``, as
        the editor's asset service names a taken one); the path relative to
        the project root. The same bytes under the same name are reused."""
        if len(raw) > self.max_bytes:
            raise ValueError("larger than %d bytes" % self.max_bytes)
        name = safe_name(name, mime, raw)
        directory = self._directory()
        stem, ext = os.path.splitext(name)
        tmp = os.path.join(directory, ".tmp-%s.part" % secrets.token_hex(8))
        # O_EXCL + O_NOFOLLOW: a fresh file; mode 0666 less the umask, as the
        # editor's own write (the notebook's readers read its plots too).
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o666)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(raw)
            for n in range(_MAX_TRIES):
                candidate = name if n == 0 else "%s-%d%s" % (stem, n, ext)
                path = os.path.join(directory, candidate)
                try:
                    os.link(tmp, path)   # fails if the name is taken; never follows a symlink
                    return posixpath.join(*GENERATED, candidate)
                except FileExistsError:
                    if _same_file_content(path, raw):
                        return posixpath.join(*GENERATED, candidate)
            raise ValueError("no free name for %s in %s" % (name, directory))
        finally:
            try:
                os.unlink(tmp)
            except OSError:
                pass

    def _directory(self) -> str:
        """``<root>/_assets/generated``, made if missing; never through a symlink."""
        path = self.project_root
        for part in GENERATED:
            path = os.path.join(path, part)
            try:
                os.mkdir(path)
            except FileExistsError:
                pass
            info = os.lstat(path)
            if not stat.S_ISDIR(info.st_mode):
                raise ValueError("%s is not a directory (a symlink is not followed)" % path)
        return path


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return "cannot write it under --project-root (%s)" % exc.strerror.lower()
    return str(exc)


def _same_file_content(path: str, raw: bytes) -> bool:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return False
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            return False
        return f.read(len(raw) + 1) == raw
