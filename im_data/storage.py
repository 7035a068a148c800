"""Paths that may be local or URLs (``s3://``, ``gs://``, ``memory://``, anything fsspec knows).

One small vocabulary used by the output contract (:mod:`im_data.dataset`), the writers and the readers, so that
a location is a plain string everywhere: a local path keeps working exactly as before (``os`` calls, atomic
``os.replace``), a URL goes through its fsspec filesystem. Credentials and endpoints come from the usual places
of each filesystem (for S3: ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_ENDPOINT_URL``, ``~/.aws``).
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import uuid
from typing import IO, Any

LOCAL_PROTOCOLS = ("file", "local")


def is_url(path: str | os.PathLike) -> bool:
    """True for ``proto://...`` locations other than ``file://``."""
    text = os.fspath(path)
    return "://" in text and not text.startswith("file://")


def local_path(path: str | os.PathLike) -> str:
    text = os.fspath(path)
    return text[len("file://"):] if text.startswith("file://") else os.path.expanduser(text)


def normalize(path: str | os.PathLike) -> str:
    """An absolute local path, or the URL without a trailing slash."""
    if is_url(path):
        return os.fspath(path).rstrip("/")
    return os.path.abspath(local_path(path))


#: S3 requests fail after bounded time (a frozen or dead endpoint is an error within minutes, never a stall):
#: seconds to connect, seconds to wait for a response, attempts by botocore, and retries by s3fs on top.
S3_CONNECT_TIMEOUT_S = 10
S3_READ_TIMEOUT_S = 20
S3_ATTEMPTS = 2
S3FS_RETRIES = 1


def storage_options(path: str | os.PathLike) -> dict[str, Any]:
    """Options for the filesystem of ``path``: timeouts and bounded retries on S3; nothing elsewhere."""
    if os.fspath(path).split("://", 1)[0] in ("s3", "s3a"):
        return {"config_kwargs": {"connect_timeout": S3_CONNECT_TIMEOUT_S, "read_timeout": S3_READ_TIMEOUT_S,
                                  "retries": {"max_attempts": S3_ATTEMPTS, "mode": "standard"}}}
    return {}


def filesystem(path: str | os.PathLike):
    """``(fsspec filesystem, path inside it)``."""
    from fsspec.core import url_to_fs

    if not is_url(path):
        return url_to_fs(local_path(path))
    options = storage_options(path)
    fs, inner = url_to_fs(os.fspath(path), **options)
    if options:
        fs.retries = S3FS_RETRIES  # s3fs's own retries on top of botocore's (a class attribute, 5 by default)
    return fs, inner


def _fresh(path: str | os.PathLike):
    """``filesystem(path)`` with its listing cache dropped: other processes (Beam workers) write there too."""
    fs, p = filesystem(path)
    fs.invalidate_cache()
    return fs, p


def join(base: str | os.PathLike, *parts: str) -> str:
    if is_url(base):
        return posixpath.join(os.fspath(base).rstrip("/"), *parts)
    return os.path.join(local_path(base), *parts)


def parent(path: str | os.PathLike) -> str:
    if is_url(path):
        text = os.fspath(path).rstrip("/")
        head, _, _ = text.rpartition("/")
        return head
    return os.path.dirname(normalize(path))


def basename(path: str | os.PathLike) -> str:
    text = os.fspath(path).rstrip("/") if is_url(path) else normalize(path)
    return text.rsplit("/", 1)[-1] if is_url(path) else os.path.basename(text)


def relative_to(path: str, root: str) -> str | None:
    """``path`` relative to ``root`` ("/"-separated), or None when it is not inside ``root``."""
    p, r = normalize(path), normalize(root)
    if is_url(p) != is_url(r):
        return None
    sep = "/" if is_url(p) else os.sep
    if p == r:
        return ""
    if not p.startswith(r.rstrip(sep) + sep):
        return None
    return p[len(r.rstrip(sep)) + 1:].replace(os.sep, "/")


def open_file(path: str | os.PathLike, mode: str = "rb", **kwargs: Any) -> IO[Any]:
    """``open`` for a local path, the filesystem's ``open`` for a URL (text modes take ``encoding=`` etc.)."""
    if not is_url(path):
        return open(local_path(path), mode, **kwargs)
    fs, p = filesystem(path)
    return fs.open(p, mode, **kwargs)


def exists(path: str | os.PathLike) -> bool:
    if not is_url(path):
        return os.path.exists(local_path(path))
    fs, p = _fresh(path)
    return fs.exists(p)


def isfile(path: str | os.PathLike) -> bool:
    if not is_url(path):
        return os.path.isfile(local_path(path))
    fs, p = _fresh(path)
    return fs.isfile(p)


def isdir(path: str | os.PathLike) -> bool:
    if not is_url(path):
        return os.path.isdir(local_path(path))
    fs, p = _fresh(path)
    return fs.isdir(p)


def makedirs(path: str | os.PathLike) -> None:
    """``mkdir -p``; a no-op on object stores (prefixes need no creation)."""
    if not is_url(path):
        os.makedirs(local_path(path), exist_ok=True)


def list_files(root: str | os.PathLike) -> list[str]:
    """Every file under ``root``, as sorted "/"-separated paths relative to it (empty when it is absent)."""
    if not is_url(root):
        base = local_path(root)
        out = []
        for dirpath, _, files in os.walk(base):
            for name in files:
                out.append(os.path.relpath(os.path.join(dirpath, name), base).replace(os.sep, "/"))
        return sorted(out)
    fs, p = _fresh(root)
    if not fs.exists(p):
        return []
    prefix = p.rstrip("/") + "/"
    return sorted(f[len(prefix):] for f in fs.find(p) if f.startswith(prefix))


def list_dir(path: str | os.PathLike) -> list[str]:
    """Names directly inside a directory / prefix (files and sub-directories)."""
    if not is_url(path):
        return sorted(os.listdir(local_path(path)))
    fs, p = _fresh(path)
    return sorted(posixpath.basename(e.rstrip("/")) for e in fs.ls(p, detail=False))


def size(path: str | os.PathLike) -> int:
    if not is_url(path):
        return os.path.getsize(local_path(path))
    fs, p = _fresh(path)
    return int(fs.size(p))


def modified(path: str | os.PathLike) -> float | None:
    """Modification time (seconds since the epoch), None when the filesystem does not say."""
    if not is_url(path):
        return os.path.getmtime(local_path(path))
    fs, p = _fresh(path)
    try:
        return fs.modified(p).timestamp()
    except (NotImplementedError, AttributeError, OSError, ValueError):
        return None


def remove(path: str | os.PathLike) -> None:
    """Delete one file; a missing file is fine."""
    if not is_url(path):
        try:
            os.remove(local_path(path))
        except FileNotFoundError:
            pass
        return
    fs, p = _fresh(path)
    if fs.exists(p):
        fs.rm_file(p)


def remove_tree(path: str | os.PathLike) -> None:
    """Delete a directory / prefix and everything under it (used only on im-data's own temporary folders)."""
    if not is_url(path):
        import shutil

        shutil.rmtree(local_path(path), ignore_errors=True)
        return
    fs, p = _fresh(path)
    if fs.exists(p):
        fs.rm(p, recursive=True)


def copy_file(src: str, dst: str) -> None:
    """Server-side copy when both ends are on the same filesystem."""
    if not is_url(src) and not is_url(dst):
        import shutil

        os.makedirs(os.path.dirname(local_path(dst)), exist_ok=True)
        shutil.copyfile(local_path(src), local_path(dst))
        return
    fs, p = filesystem(src)
    fs2, q = filesystem(dst)
    if type(fs) is type(fs2):
        fs.copy(p, q)
    else:
        with open_file(src, "rb") as fi, open_file(dst, "wb") as fo:
            for chunk in iter(lambda: fi.read(1 << 20), b""):
                fo.write(chunk)


def read_bytes(path: str | os.PathLike) -> bytes:
    with open_file(path, "rb") as f:
        return f.read()


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Readers see the old content or the new one, never a part: temp file + fsync + ``os.replace`` locally, one
    PUT on an object store (objects appear whole)."""
    if is_url(path):
        fs, p = filesystem(path)
        fs.pipe_file(p, data)
        return
    target = local_path(path)
    tmp = f"{target}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        try:
            os.remove(tmp)
        except FileNotFoundError:
            pass
        raise


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open_file(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
