"""Content-addressed store of frame images in a local directory.

An image lives at `root/ab/cd/<sha256>.jpg`, where ab and cd are the first hex digits of
its SHA-256; its URI (what the `frames.image_uri` column holds) is that path relative to
the root, e.g. `3f/a2/3fa2…c1.jpg`. Only the hash becomes a path component: car and camera
ids never do, so a hostile id cannot name a file. `get` accepts nothing but URIs of exactly
that shape, and refuses symlinks anywhere under the root, so a URI from the database
cannot read outside the store either. Writes are atomic (`files.write_atomic`), so a
reader never sees half an image and two consumers writing the same image are harmless.
Files are created 0666 and directories 0777, less the process umask (0644 / 0755 usually).
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
from pathlib import Path

from ..files import write_atomic

_URI_RE = re.compile(r"(?P<a>[0-9a-f]{2})/(?P<b>[0-9a-f]{2})/(?P<digest>[0-9a-f]{64})(?P<suffix>\.[a-z0-9]{1,5})")
_SUFFIX_RE = re.compile(r"\.[a-z0-9]{1,5}")


class ImageStoreError(ValueError):
    """A URI that does not name an image of this store (malformed, escaping the root, a symlink)."""


class ImageStore:
    """`put(bytes) -> uri`, `get(uri) -> bytes` over a content-addressed directory."""

    def __init__(self, root: str | Path) -> None:
        root_path = Path(root).expanduser()
        root_path.mkdir(parents=True, exist_ok=True)
        self.root = root_path.resolve()

    def __repr__(self) -> str:
        return f"ImageStore({str(self.root)!r})"

    @staticmethod
    def uri_for(data: bytes, suffix: str = ".jpg") -> str:
        """The URI `data` has (or would have) in any ImageStore."""
        if not _SUFFIX_RE.fullmatch(suffix):
            raise ImageStoreError(f"image suffix {suffix!r} must look like '.jpg' (a dot and 1-5 of a-z0-9)")
        digest = hashlib.sha256(data).hexdigest()
        return f"{digest[:2]}/{digest[2:4]}/{digest}{suffix}"

    def put(self, data: bytes, suffix: str = ".jpg") -> str:
        """Store `data` (idempotent: the same bytes give the same URI and one file)."""
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"ImageStore.put takes the encoded image bytes, got {type(data).__name__}")
        data = bytes(data)
        uri = self.uri_for(data, suffix)
        path = self.path_for(uri, must_exist=False)
        if self._is_regular_file(path):
            return uri
        path.parent.mkdir(parents=True, exist_ok=True)  # 0777 less the umask: 0755 usually
        self._check_inside(path.parent)
        write_atomic(path, data)  # 0666 less the umask: analysts and the dashboard read these files
        return uri

    def get(self, uri: str, *, verify: bool = True) -> bytes:
        """The bytes stored under `uri`; with `verify`, checks they still hash to the URI."""
        path = self.path_for(uri, must_exist=True)
        flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0)
        try:
            fd = os.open(path, flags)
        except FileNotFoundError:
            raise FileNotFoundError(f"image {uri} is not in {self.root}") from None
        except OSError as exc:
            raise ImageStoreError(f"image {uri} cannot be opened safely in {self.root}: {exc}") from None
        with os.fdopen(fd, "rb") as handle:
            data = handle.read()
        if verify:
            digest = _URI_RE.fullmatch(uri).group("digest")  # type: ignore[union-attr]  # path_for checked it
            actual = hashlib.sha256(data).hexdigest()
            if actual != digest:
                raise ImageStoreError(f"image {uri} in {self.root} is corrupt: its content hashes to {actual}")
        return data

    def delete(self, uri: str) -> int:
        """Remove the image behind `uri`; returns the bytes freed (0 if it was not there)."""
        path = self.path_for(uri, must_exist=False)
        try:
            size = path.lstat().st_size
            path.unlink()
        except FileNotFoundError:
            return 0
        return size

    def __contains__(self, uri: object) -> bool:
        if not isinstance(uri, str):
            return False
        try:
            return self._is_regular_file(self.path_for(uri, must_exist=False))
        except ImageStoreError:
            return False

    def path_for(self, uri: str, *, must_exist: bool = True) -> Path:
        """The file behind `uri`, after checking the URI is one this store makes and stays inside the root.

        Raises ImageStoreError for anything else: other shapes, `..`, absolute paths,
        backslashes, NUL bytes, a digest whose directories disagree with it, symlinks.
        """
        if not isinstance(uri, str):
            raise ImageStoreError(f"image URI must be a string, got {type(uri).__name__}")
        match = _URI_RE.fullmatch(uri)
        if match is None or match["a"] != match["digest"][:2] or match["b"] != match["digest"][2:4]:
            raise ImageStoreError(
                f"image URI {uri!r} is not of the form ab/cd/<sha256 hex>.jpg made by ImageStore.put; refusing to read it"
            )
        path = self.root / match["a"] / match["b"] / f"{match['digest']}{match['suffix']}"
        self._check_inside(path)
        if must_exist and not path.exists():
            raise FileNotFoundError(f"image {uri} is not in {self.root}")
        return path

    def _check_inside(self, path: Path) -> None:
        """No component between the root and `path` may be a symlink (it could point anywhere)."""
        relative = path.relative_to(self.root)
        current = self.root
        for part in relative.parts:
            current = current / part
            try:
                mode = current.lstat().st_mode
            except FileNotFoundError:
                return
            if stat.S_ISLNK(mode):
                raise ImageStoreError(
                    f"{current} is a symlink; the image store {self.root} refuses symlinks (they can lead outside it)"
                )

    @staticmethod
    def _is_regular_file(path: Path) -> bool:
        try:
            return stat.S_ISREG(path.lstat().st_mode)
        except FileNotFoundError:
            return False
