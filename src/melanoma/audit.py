"""Duplicate and leakage audit: exact copies (hash of decoded pixels) and near-duplicates, grouped
into clusters within a dataset, across its splits, and against a second dataset.

Near-duplicates are found by normalised cross-correlation of high-passed 24x24 colour thumbnails,
over the 8 flips/rotations and a centre crop. We measured imagehash's 64-bit pHash first: on dermoscopy, where
every image is "a dark blob on skin", 3 of 4 pairs it puts at Hamming distance 2 are different
lesions, and a re-lit or cropped copy lies further away than that. Thumbnail correlation separates
them (README, "Audit quality"); each thumbnail costs one decode and a resize.

Outputs: ``clusters.csv`` (path, split, label, cluster_id, cluster_size) and ``audit.json``.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import sqlite3
import stat
import time
from collections import Counter
from collections.abc import Callable
from contextlib import closing, nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from .config import atomic_write_text
from .datasets import discover, load_image
from .imaging import Sample

# Cosine similarity of normalised thumbnails at or above which two images are near-duplicates.
NEAR_DUP_SIMILARITY = 0.98
THUMB = 24  # thumbnail side, pixels
CROP = 0.06  # the centre crop trims this fraction from each side, to catch slightly cropped copies


@dataclass
class Hashes:
    exact: str  # sha256 of the decoded RGB pixels and their shape
    thumbs: np.ndarray  # (2, THUMB*THUMB*3) float32: full image and centre crop, zero-mean, unit norm


def _normalised_thumb(img: Image.Image) -> np.ndarray:
    from scipy.ndimage import gaussian_filter

    a = np.asarray(img.resize((THUMB, THUMB), Image.Resampling.BOX), dtype=np.float32)
    # High-pass: dermatoscope vignettes and lighting gradients look alike across patients and
    # would otherwise dominate the correlation; the lesion's own structure is what identifies it.
    a = a - gaussian_filter(a, sigma=(THUMB / 8, THUMB / 8, 0))
    a = a - a.mean(axis=(0, 1))  # per channel: invariant to a colour cast or brightness offset
    return (a / (np.linalg.norm(a) + 1e-6)).reshape(-1)


def hash_image(img: Image.Image) -> Hashes:
    rgb = img.convert("RGB")
    pixels = np.asarray(rgb)
    exact = hashlib.sha256(str(pixels.shape).encode() + pixels.tobytes()).hexdigest()
    w, h = rgb.size
    crop = rgb.crop((round(CROP * w), round(CROP * h), round((1 - CROP) * w), round((1 - CROP) * h)))
    return Hashes(exact, np.stack([_normalised_thumb(rgb), _normalised_thumb(crop)]))


def dihedral(thumbs: np.ndarray) -> np.ndarray:
    """(N, D) thumbnails -> (N, 8, D): every flip and 90-degree rotation."""
    grid = thumbs.reshape(len(thumbs), THUMB, THUMB, 3)
    variants = [np.rot90(g, k, axes=(1, 2)) for g in (grid, grid[:, :, ::-1]) for k in range(4)]
    return np.stack([v.reshape(len(thumbs), -1) for v in variants], axis=1)


def _hash_file(path: str) -> tuple[str, str, np.ndarray] | None:
    try:
        h = hash_image(load_image(path))
    except (OSError, ValueError, Image.DecompressionBombError):
        return None
    return path, h.exact, h.thumbs.astype(np.float32)


def cache_dir() -> Path:
    return Path(os.environ.get("MELANOMA_CACHE_DIR", Path.home() / ".cache" / "melanoma"))


def _thumb_cache() -> sqlite3.Connection:
    """The hash cache: one SQLite table (stdlib, transactional, safe across processes), thumbnails as
    float32 blobs, looked up by path. Its first form, one JSON line per image appended forever, had
    grown to 5.2 GB on a development machine and took 110 s to read before every audit, however small."""
    folder = cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"thumbs{THUMB}.jsonl").unlink(missing_ok=True)  # that old form, superseded
    con = sqlite3.connect(folder / f"thumbs{THUMB}.sqlite", timeout=120)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("CREATE TABLE IF NOT EXISTS hashes (path TEXT PRIMARY KEY, stamp TEXT, exact TEXT, thumbs BLOB)")
    return con


def hash_files(paths: list[Path], on_progress: Callable[[int], None] | None = None,
               workers: int | None = None) -> dict[str, Hashes]:
    """Hashes per path (unreadable files are left out), cached by resolved path, size and mtime.

    Entries of files that no longer exist are dropped from the cache on the way, so it holds at most
    one entry per image that still exists."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    stamps = {}
    for p in paths:
        try:
            st = p.stat()
        except OSError:
            continue
        if stat.S_ISREG(st.st_mode):
            stamps[str(p)] = (str(p.resolve()), f"{st.st_size}|{st.st_mtime_ns}")
    out: dict[str, Hashes] = {}
    with closing(_thumb_cache()) as con:
        cached = {}
        resolved = [r for r, _ in stamps.values()]
        for i in range(0, len(resolved), 500):  # SQLite's limit on bound parameters
            chunk = resolved[i:i + 500]
            cached.update((path, (stamp, exact, blob)) for path, stamp, exact, blob in con.execute(
                f"SELECT path, stamp, exact, thumbs FROM hashes WHERE path IN ({','.join('?' * len(chunk))})", chunk))
        todo = []
        for p, (r, stamp) in stamps.items():
            hit = cached.get(r)
            if hit and hit[0] == stamp:
                out[p] = Hashes(hit[1], np.frombuffer(hit[2], dtype=np.float32).reshape(2, -1))
            else:
                todo.append(p)
        if on_progress:
            on_progress(len(out))
        if todo:
            # Workers are spawned, not forked: a fork after other threads have started (ONNX Runtime's,
            # torch's: evaluate then audit in one process, or train's data audit) can inherit a held lock and hang.
            # A batch smaller than one chunk is hashed here: starting interpreters would cost more.
            workers = 1 if len(todo) <= 64 else (workers or os.cpu_count() or 1)
            with (ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) if workers > 1
                  else nullcontext()) as pool:
                rows = []
                for result in (pool.map(_hash_file, todo, chunksize=64) if pool else map(_hash_file, todo)):
                    if on_progress:
                        on_progress(1)
                    if result is None:
                        continue
                    p, exact, ph = result
                    out[p] = Hashes(exact, ph)  # float32 already
                    rows.append((*stamps[p], exact, out[p].thumbs.tobytes()))
                    if len(rows) >= 256:  # a crash loses at most this many hashes
                        _store(con, rows)
                _store(con, rows)
        gone = [(path,) for (path,) in con.execute("SELECT path FROM hashes") if not os.path.exists(path)]
        if gone:
            with con:
                con.executemany("DELETE FROM hashes WHERE path = ?", gone)
    return out


def _store(con, rows: list) -> None:
    with con:  # one transaction
        con.executemany("INSERT OR REPLACE INTO hashes VALUES (?, ?, ?, ?)", rows)
    rows.clear()


def near_pairs(a: np.ndarray, b: np.ndarray | None = None, min_similarity: float = NEAR_DUP_SIMILARITY,
               chunk: int = 128) -> list[tuple[int, int, float]]:
    """Pairs ``(i, j, similarity)`` of near-duplicates between thumbnails ``a`` (N, 2, D) and ``b``
    (M, 2, D); without ``b``, within ``a`` (i != j, each pair once).

    Image i's full and cropped thumbnails are compared with every flip/rotation of image j's full
    thumbnail: a copy of j that was flipped, or cropped (then its full view matches j's crop, which
    the symmetric comparison covers), scores close to 1.
    """
    same = b is None
    b = a if same else b
    db = dihedral(b[:, 0])  # (M, 8, D)
    db_flat = db.reshape(-1, db.shape[-1]).T  # (D, M*8)
    found: dict[tuple[int, int], float] = {}

    def scan(q: np.ndarray, target: np.ndarray, swap: bool) -> None:
        for start in range(0, len(q), chunk):
            sims = (q[start:start + chunk].reshape(-1, q.shape[-1]) @ target)
            sims = sims.reshape(-1, q.shape[1], target.shape[1] // 8, 8).max(axis=(1, 3))  # (chunk, M)
            for i, j in zip(*np.nonzero(sims >= min_similarity)):
                i = int(i) + start
                key = (int(j), i) if swap else (i, int(j))
                if same and key[0] == key[1]:
                    continue
                if same:
                    key = (min(key), max(key))
                found[key] = max(found.get(key, 0.0), float(sims[i - start, j]))

    scan(a, db_flat, swap=False)
    if not same:  # a crop of b, found from b's side
        scan(b[:, 1:], dihedral(a[:, 0]).reshape(-1, a.shape[-1]).T, swap=True)
    return [(i, j, round(s, 4)) for (i, j), s in sorted(found.items())]


def cluster(n: int, pairs: list[tuple[int, int, float]]) -> np.ndarray:
    """Connected components of the duplicate graph: (n,) cluster ids."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    rows = [i for i, _, _ in pairs]
    cols = [j for _, j, _ in pairs]
    graph = coo_matrix((np.ones(len(pairs)), (rows, cols)), shape=(n, n))
    return connected_components(graph, directed=False)[1]


@dataclass
class AuditResult:
    samples: list[tuple[Sample, str]]  # (sample, split) for every readable image
    cluster_ids: np.ndarray
    pairs: list[tuple[int, int, float]]
    summary: dict
    cross: list[tuple[str, str, float]] = field(default_factory=list)  # (other path, path, bits)

    def clean_test_paths(self) -> set[str]:
        """Test images with no near-duplicate or exact copy among the training images (train and val)."""
        train_clusters = {c for (s, split), c in zip(self.samples, self.cluster_ids) if split != "test"}
        return {str(s.path) for (s, split), c in zip(self.samples, self.cluster_ids)
                if split == "test" and c not in train_clusters}

    def groups(self) -> dict[str, int]:
        """Cluster id per path, for a grouped validation split."""
        return {str(s.path): int(c) for (s, _), c in zip(self.samples, self.cluster_ids)}


def audit(data: str | Path, against: str | Path | None = None, min_similarity: float = NEAR_DUP_SIMILARITY,
          on_progress: Callable[[int], None] | None = None, on_start: Callable[[int], None] | None = None
          ) -> AuditResult:
    """Find duplicates within the dataset at ``data`` and, with ``against``, across both datasets."""
    labelled = [(s, split) for split, items in discover(data).items() for s in items]
    other = [(s, split) for split, items in discover(against).items() for s in items] if against else []
    if on_start:
        on_start(len(labelled) + len(other))
    hashes = hash_files([s.path for s, _ in labelled + other], on_progress)
    labelled = [(s, sp) for s, sp in labelled if str(s.path) in hashes]
    other = [(s, sp) for s, sp in other if str(s.path) in hashes]
    th = np.stack([hashes[str(s.path)].thumbs for s, _ in labelled]) if labelled else np.zeros((0, 2, 1), np.float32)
    exact = [hashes[str(s.path)].exact for s, _ in labelled]

    pairs = near_pairs(th, min_similarity=min_similarity)
    by_exact: dict[str, list[int]] = {}
    for i, h in enumerate(exact):
        by_exact.setdefault(h, []).append(i)
    pairs += [(g[0], j, 1.0) for g in by_exact.values() for j in g[1:]]
    ids = cluster(len(labelled), pairs)

    sizes = Counter(ids.tolist())
    splits_of: dict[int, set[str]] = {}
    labels_of: dict[int, set[int]] = {}
    for (s, split), c in zip(labelled, ids):
        splits_of.setdefault(c, set()).add(split)
        labels_of.setdefault(c, set()).add(s.label)
    test_in_train = Counter(s.label for (s, split), c in zip(labelled, ids)
                            if split == "test" and splits_of[c] - {"test"})
    n_test = Counter(s.label for s, split in labelled if split == "test")
    disagree = [c for c, labs in labels_of.items() if len(labs) > 1]
    summary = {
        "data": str(data), "near_duplicate_min_similarity": min_similarity,
        "method": f"exact pixel hash; cosine of high-passed {THUMB}x{THUMB} colour thumbnails over 8 flips/rotations "
                  f"and a {CROP:.0%} centre crop",
        "n_images": len(labelled),
        "n_per_split": dict(Counter(split for _, split in labelled)),
        "exact_duplicate_groups": sum(1 for g in by_exact.values() if len(g) > 1),
        "images_in_exact_duplicate_groups": sum(len(g) for g in by_exact.values() if len(g) > 1),
        "near_duplicate_clusters": sum(1 for n in sizes.values() if n > 1),
        "images_in_near_duplicate_clusters": sum(n for n in sizes.values() if n > 1),
        "clusters_spanning_splits": sum(1 for c, sp in splits_of.items() if len(sp) > 1),
        "clusters_with_disagreeing_labels": len(disagree),
        "images_in_label_disagreeing_clusters": sum(sizes[c] for c in disagree),
        "test_with_copy_in_train": {"benign": test_in_train[0], "malignant": test_in_train[1],
                                    "total": sum(test_in_train.values())},
        "test_per_class": {"benign": n_test[0], "malignant": n_test[1]},
    }
    result = AuditResult(labelled, ids, pairs, summary)
    if other:
        oth = np.stack([hashes[str(s.path)].thumbs for s, _ in other])
        cross = near_pairs(oth, th, min_similarity=min_similarity)
        exact_index = set(exact)
        cross_exact = [i for i, (s, _) in enumerate(other) if hashes[str(s.path)].exact in exact_index]
        hit = sorted({i for i, _, _ in cross} | set(cross_exact))
        summary["against"] = {
            "data": str(against), "n_images": len(other),
            "n_with_copy_in_data": len(hit),
            "per_split": dict(Counter(other[i][1] for i in hit)),
            "per_class": {"benign": sum(other[i][0].label == 0 for i in hit),
                          "malignant": sum(other[i][0].label == 1 for i in hit)},
            "label_disagreements": sum(1 for i, j, _ in cross if other[i][0].label != labelled[j][0].label),
        }
        result.cross = [(str(other[i][0].path), str(labelled[j][0].path), d) for i, j, d in cross]
    return result


def write_audit(result: AuditResult, out: str | Path) -> None:
    """clusters.csv, pairs.csv and audit.json into ``out``."""
    out = Path(out)
    sizes = Counter(result.cluster_ids.tolist())
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["path", "split", "label", "cluster_id", "cluster_size"])
    w.writerows([str(s.path), split, s.label, int(c), sizes[c]]
                for (s, split), c in zip(result.samples, result.cluster_ids))
    atomic_write_text(out / "clusters.csv", buf.getvalue())
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["path_a", "path_b", "similarity"])
    w.writerows([str(result.samples[i][0].path), str(result.samples[j][0].path), d] for i, j, d in result.pairs)
    for a, b, d in result.cross:
        w.writerow([a, b, d])
    atomic_write_text(out / "pairs.csv", buf.getvalue())
    atomic_write_text(out / "audit.json", json.dumps(result.summary, indent=2) + "\n")


AUDIT_CACHE_ENTRIES = 16  # audit results kept in the cache, most recently used first


def _mark_used(path: Path) -> None:
    # The kernel stamps writes and touch() from a clock that ticks every few ms, so entries used in quick
    # succession would tie; an explicit nanosecond time keeps the least-recently-used order exact.
    now = time.time_ns()
    os.utime(path, ns=(now, now))


def cached_audit(data: str | Path, on_progress: Callable[[int], None] | None = None,
                 on_start: Callable[[int], None] | None = None) -> AuditResult:
    """:func:`audit` of one dataset, cached under ``cache_dir()`` by its file list, sizes and
    mtimes and by the detector settings, so evaluate and train can ask for it freely."""
    splits = discover(data)
    listing = sorted(f"{s.path.resolve()}|{s.path.stat().st_size}|{s.path.stat().st_mtime_ns}|{split}|{s.label}"
                     for split, items in splits.items() for s in items if s.path.is_file())
    key = hashlib.sha256("\n".join([*listing, str(NEAR_DUP_SIMILARITY), str(THUMB), str(CROP)]).encode())
    path = cache_dir() / f"audit-{key.hexdigest()[:20]}.json"
    if path.is_file():
        try:
            saved = json.loads(path.read_text())
            samples = [(Sample(Path(p), label), split) for p, split, label in saved["samples"]]
            _mark_used(path)
            return AuditResult(samples, np.array(saved["cluster_ids"]),
                               [tuple(x) for x in saved["pairs"]], saved["summary"])
        except (ValueError, KeyError, TypeError):
            pass  # an unreadable cache entry is recomputed
    result = audit(data, on_progress=on_progress, on_start=on_start)
    atomic_write_text(path, json.dumps({
        "samples": [[str(s.path), split, s.label] for s, split in result.samples],
        "cluster_ids": result.cluster_ids.tolist(), "pairs": result.pairs, "summary": result.summary}))
    _mark_used(path)
    # Any change of a dataset's files (a fresh copy has new mtimes) makes a new entry; keep the recent ones.
    for old in sorted(cache_dir().glob("audit-*.json"), key=lambda p: p.stat().st_mtime)[:-AUDIT_CACHE_ENTRIES]:
        old.unlink(missing_ok=True)
    return result
