"""The presizing cache: decode every image once, resize it, keep it as memory-mapped arrays.

Each image is decoded with Pillow (JPEGs in draft mode, which lets libjpeg scale by a power of
two while decoding), resized without cropping so that its long side equals ``size`` and padded
to a ``size × size`` square (letterbox), and stored in a shard file ``<family>-NNNNN.npy``.
Families keep grayscale (1 channel) and colour (3 channels), 8-bit and 16-bit images apart, so a
folder of X-rays costs one byte per pixel. Entries are keyed by the blake2b hash of the file's
bytes, so renamed or copied files are not decoded again and a changed file is. A small SQLite
index maps file (path, size, mtime) to hash, and hash to (shard, row).

Shards are written to a temporary name and renamed when complete, and the index is updated in a
transaction after that, so an interrupted build keeps every finished shard and resumes from there.
Memory use is bounded by one shard, whatever the data set size.

The cache heals itself: a shard that is missing, truncated or damaged is dropped with its index
entries and its images are decoded again; a damaged index is set aside and rebuilt (its shards
with it); temporary files of killed builds and shards that no index entry names (a concurrent
build's duplicates) are collected once they are an hour old. Each repair is logged as a warning.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import numpy as np
from PIL import Image

from medbalance.core.files import atomic_write
from medbalance.data._medmnist import cache_dir
from medbalance.data.catalog import Catalog, DataError
from medbalance.data.images import NOT_AN_IMAGE, UnreadableImageError, read_image

__all__ = [
    "Fit",
    "PresizeCache",
    "PresizeSettings",
    "Presized",
    "UnreadableImagesError",
    "default_presize",
    "file_digest",
    "hash_files",
    "presize",
    "presize_array",
]

log = logging.getLogger(__name__)
SHARD_ITEMS = 2048
_STALE_S = 3600  # a temporary or unnamed shard older than this belongs to no running build
_LOOKUP_CHUNK = 900  # keys per SQL "IN (...)": below SQLite's oldest limit of 999 variables


def default_presize(size: int, native_size: int | None = None) -> int:
    """The cache side for training at ``size``: 1.25 x ``size`` (a margin for crops and zooms),
    but never above the native side of array data (no upsampling to store; the batch transform
    resizes on the device)."""
    presize = math.ceil(size * 1.25)
    return native_size if native_size is not None and native_size <= presize else presize


class Fit(StrEnum):
    PAD = "pad"  # keep the aspect ratio, pad the short side (no cropping, no distortion)
    SQUISH = "squish"  # stretch to a square (no cropping, no padding)


@dataclass(frozen=True)
class PresizeSettings:
    """How images are presized; part of the cache key."""

    size: int
    fit: Fit = Fit.PAD

    def __post_init__(self) -> None:
        if not 8 <= self.size <= 4096:
            raise ValueError(f"presize must be between 8 and 4096 pixels, got {self.size}")
        object.__setattr__(self, "fit", Fit(self.fit))

    @property
    def key(self) -> str:
        return f"v1-{self.size}px-{self.fit}"


class UnreadableImagesError(DataError):
    """Some images could not be decoded; ``failures`` holds (path, reason) for each one."""

    def __init__(self, failures: Sequence[tuple[str, str]]) -> None:
        self.failures = list(failures)
        shown = "\n".join(f"  {path}: {reason}" for path, reason in self.failures[:20])
        more = f"\n  ... and {len(self.failures) - 20} more" if len(self.failures) > 20 else ""
        super().__init__(
            f"{len(self.failures)} image(s) cannot be read:\n{shown}{more}\n"
            "Fix or remove these files, or pass --skip-unreadable to exclude them everywhere "
            "(they are then listed in summary.json)."
        )


def file_digest(path: Path) -> str:
    """Content hash of a file (blake2b, 128 bits, hex)."""
    digest = hashlib.blake2b(digest_size=16)
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def presize_array(image: np.ndarray, settings: PresizeSettings) -> np.ndarray:
    """Resize one ``(H, W)`` or ``(H, W, 3)`` image to ``(C, size, size)``, keeping its dtype."""
    size = settings.size
    height, width = image.shape[:2]
    if settings.fit is Fit.PAD:
        scale = size / max(height, width)
        new_h, new_w = max(1, round(height * scale)), max(1, round(width * scale))
    else:
        new_h, new_w = size, size
    resized = _resize(image, new_w, new_h)
    channels = 1 if image.ndim == 2 else 3
    out = np.zeros((channels, size, size), dtype=image.dtype)
    top, left = (size - new_h) // 2, (size - new_w) // 2
    planes = resized[None] if resized.ndim == 2 else resized.transpose(2, 0, 1)
    out[:, top : top + new_h, left : left + new_w] = planes
    return out


def _resize(image: np.ndarray, width: int, height: int) -> np.ndarray:
    if image.shape[1] == width and image.shape[0] == height:
        return image
    if image.dtype == np.uint8:
        return np.asarray(Image.fromarray(image).resize((width, height), Image.Resampling.LANCZOS))
    planes = [image] if image.ndim == 2 else [image[..., c] for c in range(3)]
    resized = [
        np.asarray(
            Image.fromarray(p.astype(np.float32), mode="F").resize(
                (width, height), Image.Resampling.BILINEAR
            )
        )
        for p in planes
    ]
    stacked = resized[0] if image.ndim == 2 else np.stack(resized, axis=-1)
    return np.clip(np.rint(stacked), 0, np.iinfo(image.dtype).max).astype(image.dtype)


def _decode_presized(path: Path, settings: PresizeSettings) -> np.ndarray:
    """Decode a file straight to its presized array; JPEGs decode at reduced scale."""
    return presize_array(read_image(path, draft=settings.size), settings)


def _worker(job: tuple[str, str, PresizeSettings]) -> tuple[str, np.ndarray | None, str]:
    digest, path, settings = job
    try:
        return digest, _decode_presized(Path(path), settings), ""
    except UnreadableImageError as error:
        return digest, None, str(error).removeprefix(f"{path}: ")


@dataclass
class Presized:
    """Presized images of a catalog in catalog order, backed by memory-mapped shards.

    ``channels`` is 3 when any item is colour (grayscale items are repeated at read time), and
    ``dtype`` is uint16 when any item is 16-bit (8-bit items are scaled by 257 at read time).
    """

    arrays: list[np.ndarray]  # one array per (family, shard); rows of (C, S, S)
    where: np.ndarray  # (N, 2): array number, row
    channels: int
    dtype: np.dtype
    digests: tuple[str, ...] | None = None  # each file's content hash, in catalog order

    def __len__(self) -> int:
        return len(self.where)

    def take(self, indices: Sequence[int] | np.ndarray) -> np.ndarray:
        """Images ``indices`` as one ``(B, C, S, S)`` array."""
        idx = np.asarray(indices, dtype=np.int64)
        first = self.arrays[0]
        out = np.empty((len(idx), self.channels, *first.shape[2:]), dtype=self.dtype)
        where = self.where[idx]
        for a in np.unique(where[:, 0]):
            rows = np.flatnonzero(where[:, 0] == a)
            block = np.asarray(self.arrays[a][where[rows, 1]])
            if block.dtype != self.dtype:
                block = block.astype(self.dtype) * 257
            out[rows] = block if block.shape[1] == self.channels else np.repeat(block, 3, axis=1)
        return out


class PresizeCache:
    """A folder of presized shards shared by every data set presized with the same settings."""

    def __init__(self, settings: PresizeSettings, root: Path | None = None) -> None:
        self.settings = settings
        self.root = (root or cache_dir() / "presize") / settings.key
        self.root.mkdir(parents=True, exist_ok=True)
        try:
            self._db = self._connect()
        except sqlite3.DatabaseError as error:
            self._db = self._rebuild_index(error)
        self._collect_stale()
        self.decoded = 0  # images decoded by this object (for tests and logs)

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.root / "index.sqlite", timeout=60)
        try:
            with db:
                db.execute(
                    "CREATE TABLE IF NOT EXISTS files (path TEXT PRIMARY KEY, size INTEGER, "
                    "mtime_ns INTEGER, digest TEXT)"
                )
                db.execute(
                    "CREATE TABLE IF NOT EXISTS entries (digest TEXT PRIMARY KEY, shard TEXT, "
                    "row INTEGER)"
                )
                db.execute("SELECT count(*) FROM entries").fetchone()
        except sqlite3.DatabaseError:
            db.close()
            raise
        return db

    def _rebuild_index(self, error: Exception) -> sqlite3.Connection:
        """A damaged index: set it aside, drop the shards it named, start a new one."""
        damaged = self.root / f"index.sqlite.damaged-{int(time.time())}"
        os.replace(self.root / "index.sqlite", damaged)
        for shard in self.root.glob("*.npy"):
            shard.unlink(missing_ok=True)
        log.warning(
            "warning: the presize cache index %s was damaged (%s); moved to %s, images are "
            "decoded again",
            self.root / "index.sqlite",
            error,
            damaged.name,
        )
        return self._connect()

    def _collect_stale(self) -> None:
        """Remove temporary files of killed builds and shards that no entry names (a
        concurrent build's duplicates), once they are old enough to belong to no running
        build."""
        now = time.time()
        named = {row[0] for row in self._db.execute("SELECT DISTINCT shard FROM entries")}
        for path in [*self.root.glob("*.part"), *self.root.glob("*.npy")]:
            try:
                old = now - path.stat().st_mtime > _STALE_S
            except OSError:
                continue
            if old and (path.suffix == ".part" or path.name not in named):
                path.unlink(missing_ok=True)
                log.info("presize cache: removed stale %s", path.name)

    def close(self) -> None:
        self._db.close()

    def digests(self, paths: Sequence[Path]) -> list[str]:
        """Content hash of each file, re-hashing only files whose size or mtime changed.

        The index is read for these paths only, a chunk at a time, so memory does not grow with
        the other data sets that share this cache.
        """
        out: list[str] = []
        for start in range(0, len(paths), _LOOKUP_CHUNK):
            chunk = paths[start : start + _LOOKUP_CHUNK]
            names = [str(p) for p in chunk]
            known = {
                row[0]: row[1:]
                for row in self._select(
                    "SELECT path, size, mtime_ns, digest FROM files", "path", names
                )
            }
            fresh = []
            for path, name in zip(chunk, names, strict=True):
                stat = path.stat()
                hit = known.get(name)
                if hit is not None and hit[0] == stat.st_size and hit[1] == stat.st_mtime_ns:
                    out.append(hit[2])
                    continue
                digest = file_digest(path)
                fresh.append((name, stat.st_size, stat.st_mtime_ns, digest))
                out.append(digest)
            with self._db:
                self._db.executemany("INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?)", fresh)
        return out

    def _select(self, query: str, column: str, keys: Sequence[str]) -> sqlite3.Cursor:
        """The rows of ``query`` whose ``column`` is one of ``keys`` (one chunk of keys)."""
        marks = ",".join("?" * len(keys))
        return self._db.execute(f"{query} WHERE {column} IN ({marks})", list(keys))

    def _locate(self, digests: Sequence[str]) -> dict[str, tuple[str, int]]:
        """Shard and row of each of ``digests`` that is in the cache."""
        unique = list(dict.fromkeys(digests))
        found: dict[str, tuple[str, int]] = {}
        for start in range(0, len(unique), _LOOKUP_CHUNK):
            chunk = unique[start : start + _LOOKUP_CHUNK]
            for digest, shard, row in self._select(
                "SELECT digest, shard, row FROM entries", "digest", chunk
            ):
                found[digest] = (shard, row)
        return found

    def ensure(
        self,
        catalog: Catalog,
        *,
        workers: int | None = None,
        skip_unreadable: bool = False,
        progress: Callable[[int, int], None] | None = None,
    ) -> tuple[Presized, list[tuple[str, str]]]:
        """Presize every image of a file catalog (decoding only new ones) and return them.

        Returns:
            The presized images in catalog order and the unreadable files as (path, reason).
            With ``skip_unreadable`` the caller must drop those items from its catalog.

        Raises:
            UnreadableImagesError: some files cannot be decoded and ``skip_unreadable`` is off.
        """
        if catalog.paths is None:
            raise ValueError("PresizeCache.ensure needs a catalog of files; use presize()")
        exists = [p.is_file() for p in catalog.paths]  # one stat a file
        present = [p for p, there in zip(catalog.paths, exists, strict=True) if there]
        missing = [
            (str(p), "no such file")
            for p, there in zip(catalog.paths, exists, strict=True)
            if not there
        ]
        digests = self.digests(present)
        have = self._drop_damaged(self._locate(digests))
        todo: dict[str, str] = {}
        for digest, path in zip(digests, present, strict=True):
            if digest not in have and digest not in todo:
                todo[digest] = str(path)
        failures = missing + self._build(todo, workers, progress)
        not_images = [(p, why) for p, why in failures if why.startswith(NOT_AN_IMAGE)]
        if not_images:  # never trained on, always listed
            log.warning(
                "warning: %d file(s) left out as not images: %s",
                len(not_images),
                "; ".join(f"{p}: {why}" for p, why in not_images[:5]),
            )
        if len(not_images) < len(failures) and not skip_unreadable:
            raise UnreadableImagesError([f for f in failures if f not in not_images])
        if todo:
            have.update(self._locate(list(todo)))
        bad = {path for path, _ in failures}
        keep = [d for d, p in zip(digests, present, strict=True) if str(p) not in bad]
        return self._open(keep, have), failures

    def _build(
        self,
        todo: dict[str, str],
        workers: int | None,
        progress: Callable[[int, int], None] | None,
    ) -> list[tuple[str, str]]:
        failures: list[tuple[str, str]] = []
        if not todo:
            return failures
        jobs = [(d, p, self.settings) for d, p in todo.items()]
        pending: dict[str, list[tuple[str, np.ndarray]]] = {}
        done = 0
        for digest, array, reason in self._map(jobs, workers):
            done += 1
            if progress is not None:
                progress(done, len(jobs))
            if array is None:
                failures.append((todo[digest], reason))
                continue
            self.decoded += 1
            family = f"{array.shape[0]}c-{array.dtype}"
            pending.setdefault(family, []).append((digest, array))
            if len(pending[family]) >= SHARD_ITEMS:
                self._write_shard(family, pending.pop(family))
        for family, items in pending.items():
            self._write_shard(family, items)
        return failures

    @staticmethod
    def _map(
        jobs: list[tuple[str, str, PresizeSettings]], workers: int | None
    ) -> Iterator[tuple[str, np.ndarray | None, str]]:
        workers = workers if workers is not None else min(len(jobs) // 64 + 1, os.cpu_count() or 1)
        if workers <= 1:
            yield from map(_worker, jobs)
            return
        with ProcessPoolExecutor(max_workers=workers) as pool:
            yield from pool.map(_worker, jobs, chunksize=16)

    def _drop_damaged(self, have: dict[str, tuple[str, int]]) -> dict[str, tuple[str, int]]:
        """Only entries whose shard opens and holds their row; the others are removed from the
        index (with their shard file) so their images are decoded again."""
        rows: dict[str, int] = {}
        for shard, row in have.values():
            rows[shard] = max(rows.get(shard, -1), row)
        bad = {shard for shard, top in rows.items() if not self._shard_holds(shard, top)}
        if not bad:
            return have
        with self._db:
            self._db.executemany("DELETE FROM entries WHERE shard = ?", [(s,) for s in bad])
        for shard in bad:
            (self.root / shard).unlink(missing_ok=True)
        log.warning(
            "warning: presize cache %s: %d damaged or missing shard(s) dropped (%s); their images "
            "are decoded again",
            self.root,
            len(bad),
            ", ".join(sorted(bad)[:3]),
        )
        return {d: (s, r) for d, (s, r) in have.items() if s not in bad}

    def _shard_holds(self, shard: str, top_row: int) -> bool:
        try:
            array = np.load(self.root / shard, mmap_mode="r")
        except (OSError, ValueError, EOFError):  # missing, truncated, not an .npy
            return False
        return array.ndim == 4 and array.shape[0] > top_row

    def _write_shard(self, family: str, items: list[tuple[str, np.ndarray]]) -> None:
        stack = np.stack([a for _, a in items])
        name = f"{family}-{uuid.uuid4().hex[:12]}.npy"

        def write(tmp: Path) -> None:
            with tmp.open("wb") as handle:
                np.save(handle, stack)

        atomic_write(self.root / name, write)  # same permissions as every output, fsync'ed
        with self._db:
            self._db.executemany(
                "INSERT OR REPLACE INTO entries VALUES (?, ?, ?)",
                [(digest, name, row) for row, (digest, _) in enumerate(items)],
            )

    def _open(self, digests: list[str], have: dict[str, tuple[str, int]]) -> Presized:
        shard_names = sorted({have[d][0] for d in digests})
        number = {name: i for i, name in enumerate(shard_names)}
        arrays = [np.load(self.root / name, mmap_mode="r") for name in shard_names]
        where = np.array([(number[have[d][0]], have[d][1]) for d in digests], dtype=np.int64)
        channels = max((a.shape[1] for a in arrays), default=1)
        dtype = (
            np.dtype(np.uint16) if any(a.dtype == np.uint16 for a in arrays) else np.dtype(np.uint8)
        )
        return Presized(
            arrays=arrays,
            where=where.reshape(-1, 2),
            channels=channels,
            dtype=dtype,
            digests=tuple(digests),
        )


def hash_files(
    catalog: Catalog, size: int, *, fit: Fit | str = Fit.PAD, cache_root: Path | None = None
) -> Catalog:
    """``catalog`` with each file's content hash in ``digests``, read through the index of the
    presize cache for ``size`` and ``fit``: only new or changed files are read, and
    :func:`presize` finds the hashes there next. Unchanged for arrays, when the hashes are
    known, or when a file is missing or unreadable (:func:`presize` reports it)."""
    if catalog.paths is None or catalog.digests is not None:
        return catalog
    cache = PresizeCache(PresizeSettings(size=size, fit=Fit(fit)), cache_root)
    try:
        digests = cache.digests(catalog.paths)
    except OSError:
        return catalog
    finally:
        cache.close()
    return catalog.replace(digests=tuple(digests))


def presize(
    catalog: Catalog,
    size: int,
    *,
    fit: Fit | str = Fit.PAD,
    cache_root: Path | None = None,
    workers: int | None = None,
    skip_unreadable: bool = False,
) -> tuple[Presized, Catalog, list[tuple[str, str]]]:
    """Presize a catalog: in memory for ``.npz`` sources, through the disk cache for files.

    Returns:
        The presized images, the catalog they belong to (without unreadable items when
        ``skip_unreadable``), and the unreadable files as (path, reason).
    """
    settings = PresizeSettings(size=size, fit=Fit(fit))
    if catalog.images is not None:
        images = catalog.images
        if images.shape[1:3] != (size, size) or settings.fit is not Fit.PAD:
            images = np.stack([np.moveaxis(presize_array(im, settings), 0, -1) for im in images])
        array = images[:, None] if images.ndim == 3 else images.transpose(0, 3, 1, 2)
        where = np.stack([np.zeros(len(array), np.int64), np.arange(len(array))], axis=1)
        presized = Presized([np.ascontiguousarray(array)], where, array.shape[1], array.dtype)
        return presized, catalog, []
    cache = PresizeCache(settings, cache_root)
    try:
        presized, failures = cache.ensure(catalog, workers=workers, skip_unreadable=skip_unreadable)
    finally:
        cache.close()
    if failures and catalog.paths is not None:
        bad = {path for path, _ in failures}
        catalog = catalog.subset(np.array([str(p) not in bad for p in catalog.paths]))
    return presized, catalog.replace(digests=presized.digests), failures
