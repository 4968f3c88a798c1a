"""Near-duplicate prompts: normalization, word-pair shingles, MinHash signatures, LSH banding,
exact confirmation; and the plan's all-pairs ``detectDuplicates``, ported as the baseline.

Pure computation, no I/O: :mod:`reference.organize.views` stores the signatures and serves
the answer.

Normalization: NFKC, case-folded; apostrophes dropped inside words ("wizard's" = "wizards"); any
other non-word character (punctuation, ``_``) separates words; whitespace collapses. Shingles are
word pairs (bigrams): unlike single words they keep word order, and on the 12-30 word prompts of a
generation app one changed word moves the Jaccard similarity from 1 to about 0.8-0.9, the range
the plan's 0.8 threshold is meant to catch. A one-word prompt's only shingle is that word.

Signatures are ``NUM_PERM`` 32-bit minima of multiply-shift hashes of 64-bit blake2b shingle
hashes, computed with numpy in chunks (no per-token Python loop). LSH uses ``BANDS`` bands of
``ROWS`` rows; every candidate pair is confirmed by exact Jaccard on the shingle sets, so LSH
costs only recall, never precision, and its parameters are chosen for recall at 0.8.
"""

from __future__ import annotations

import hashlib
import itertools
import re
import unicodedata
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol, TypeVar

import numpy as np
import numpy.typing as npt

NUM_PERM: Final = 128
BANDS: Final = 21
ROWS: Final = 6
DEFAULT_THRESHOLD: Final = 0.8
SIGNATURE_BYTES: Final = NUM_PERM * 4
HASH_SEED: Final = 20_250_108
_CHUNK_SHINGLES: Final = 8_192

_APOSTROPHES: Final = re.compile(r"['\u2019\u02bc`]")
_SEPARATORS: Final = re.compile(r"[\W_]+")

Signatures = npt.NDArray[np.uint32]


def normalize(prompt: str) -> list[str]:
    """The words of ``prompt`` after case, punctuation and whitespace normalization."""
    text = unicodedata.normalize("NFKC", prompt).casefold()
    return _SEPARATORS.sub(" ", _APOSTROPHES.sub("", text)).split()


def shingles(prompt: str) -> frozenset[str]:
    words = normalize(prompt)
    if len(words) < 2:
        return frozenset(words)
    return frozenset(f"{a} {b}" for a, b in itertools.pairwise(words))


def jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    if not a or not b:
        return 0.0
    inter = len(a & b)
    return inter / (len(a) + len(b) - inter)


def _shingle_hash(shingle: str) -> int:
    return int.from_bytes(hashlib.blake2b(shingle.encode(), digest_size=8).digest(), "little")


def _permutations() -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.uint64]]:
    rng = np.random.default_rng(HASH_SEED)
    a = rng.integers(1, 2**63, NUM_PERM, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
    b = rng.integers(0, 2**63, NUM_PERM, dtype=np.uint64)
    return a, b


_PERM_A, _PERM_B = _permutations()
_EMPTY_SIGNATURE: Final = np.full(NUM_PERM, np.iinfo(np.uint32).max, dtype=np.uint32)


def signatures(shingle_sets: Sequence[Iterable[str]]) -> Signatures:
    """MinHash signatures, one row of ``NUM_PERM`` uint32 per set (an empty set: all ones)."""
    hashes: list[int] = []
    lengths = np.empty(len(shingle_sets), dtype=np.int64)
    for i, items in enumerate(shingle_sets):
        before = len(hashes)
        hashes.extend(_shingle_hash(s) for s in items)
        lengths[i] = len(hashes) - before
    values = np.array(hashes, dtype=np.uint64)
    offsets = np.r_[0, np.cumsum(lengths)]
    out = np.tile(_EMPTY_SIGNATURE, (len(shingle_sets), 1))
    nonempty = np.flatnonzero(lengths > 0)
    # Chunks of whole sets keep the (shingles x permutations) scratch buffer cache-sized.
    first = 0
    while first < len(nonempty):
        last = int(np.searchsorted(offsets[nonempty], offsets[nonempty[first]] + _CHUNK_SHINGLES))
        last = max(last, first + 1)
        rows = nonempty[first:last]
        lo, hi = int(offsets[rows[0]]), int(offsets[rows[-1] + 1])
        buf = np.empty((hi - lo, NUM_PERM), dtype=np.uint64)
        with np.errstate(over="ignore"):
            np.multiply(values[lo:hi, None], _PERM_A[None, :], out=buf)
            buf += _PERM_B
        buf >>= np.uint64(32)
        out[rows] = np.minimum.reduceat(buf, offsets[rows] - lo, axis=0)
        first = last
    return out


def prompt_signatures(prompts: Sequence[str]) -> Signatures:
    return signatures([shingles(p) for p in prompts])


def text_key(prompt: str) -> int:
    """A signed 64-bit key of the normalized text: equal for prompts that normalize alike."""
    digest = hashlib.blake2b(" ".join(normalize(prompt)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little", signed=True)


def signature_bytes(signature: Signatures) -> bytes:
    return signature.astype("<u4", copy=False).tobytes()


def signatures_from_bytes(blobs: Sequence[bytes]) -> Signatures:
    if not blobs:
        return np.empty((0, NUM_PERM), dtype=np.uint32)
    return np.frombuffer(b"".join(blobs), dtype="<u4").reshape(len(blobs), NUM_PERM)


def candidate_probability(similarity: float, bands: int = BANDS, rows: int = ROWS) -> float:
    """Chance that LSH proposes a pair of this Jaccard similarity."""
    return 1.0 - (1.0 - similarity**rows) ** bands


@dataclass(frozen=True)
class BandedIndex:
    """LSH buckets over one user's signatures: for each band, rows sorted by the band's key."""

    size: int
    groups: tuple[npt.NDArray[np.int64], ...]

    @classmethod
    def build(cls, sigs: Signatures, bands: int = BANDS, rows: int = ROWS) -> BandedIndex:
        if bands * rows > NUM_PERM:
            raise ValueError(f"{bands} bands x {rows} rows exceed {NUM_PERM} permutations")
        groups: list[npt.NDArray[np.int64]] = []
        n = len(sigs)
        for band in range(bands):
            block = np.ascontiguousarray(sigs[:, band * rows : (band + 1) * rows])
            keys = block.view(np.dtype((np.void, block.dtype.itemsize * rows))).ravel()
            order = np.argsort(keys, kind="stable")
            sorted_keys = keys[order]
            boundary = np.r_[True, sorted_keys[1:] != sorted_keys[:-1], True] if n else np.r_[True]
            edges = np.flatnonzero(boundary)
            sizes = np.diff(edges)
            for first, size in zip(
                edges[:-1][sizes > 1].tolist(), sizes[sizes > 1].tolist(), strict=True
            ):
                groups.append(order[first : first + size].astype(np.int64))
        return cls(n, tuple(groups))

    def candidate_pairs(self) -> set[tuple[int, int]]:
        pairs: set[tuple[int, int]] = set()
        for bucket in self.groups:
            members = sorted(bucket.tolist())
            for i, left in enumerate(members):
                for right in members[i + 1 :]:
                    pairs.add((left, right))
        return pairs


class _UnionFind:
    def __init__(self, n: int) -> None:
        self.parent = list(range(n))

    def find(self, x: int) -> int:
        parent = self.parent
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


@dataclass(frozen=True)
class DuplicateResult:
    """Items grouped by equal normalized text (``nodes``), the confirmed pairs of nodes, and the
    near-duplicate sets (item indexes)."""

    nodes: tuple[tuple[int, ...], ...]
    node_pairs: tuple[tuple[int, int], ...]
    sets: tuple[tuple[int, ...], ...]
    candidates: int

    def pairs(self) -> set[tuple[int, int]]:
        """Every confirmed pair of items, ``i < j`` (quadratic in set size: for tests)."""
        out: set[tuple[int, int]] = set()
        for group in self.nodes:
            for i, left in enumerate(group):
                out.update((left, right) for right in group[i + 1 :])
        for a, b in self.node_pairs:
            out.update((min(x, y), max(x, y)) for x in self.nodes[a] for y in self.nodes[b])
        return out


def find_duplicates(
    keys: Sequence[int],
    sigs: Signatures,
    shingles_of: Callable[[int], frozenset[str]],
    threshold: float = DEFAULT_THRESHOLD,
    bands: int = BANDS,
    rows: int = ROWS,
) -> DuplicateResult:
    """Near-duplicate sets among items with normalized-text ``keys`` and MinHash ``sigs``.

    Items with the same text key are one node (their normalized texts are equal, Jaccard 1);
    LSH runs over one representative per node and each candidate pair of nodes is confirmed by
    exact Jaccard on ``shingles_of(representative)``. Sets are the connected components of the
    confirmed pairs, each sorted, listed by their first member.
    """
    members: dict[int, list[int]] = defaultdict(list)
    for i, key in enumerate(keys):
        members[key].append(i)
    nodes = list(members.values())
    reps = [m[0] for m in nodes]
    index = BandedIndex.build(sigs[reps] if len(reps) else sigs[:0], bands, rows)
    candidates = index.candidate_pairs()
    cache: dict[int, frozenset[str]] = {}

    def sh(node: int) -> frozenset[str]:
        found = cache.get(node)
        if found is None:
            found = cache[node] = shingles_of(reps[node])
        return found

    node_pairs = [(a, b) for a, b in candidates if jaccard(sh(a), sh(b)) >= threshold]
    uf = _UnionFind(len(nodes))
    for a, b in node_pairs:
        uf.union(a, b)
    components: dict[int, list[int]] = defaultdict(list)
    for node, group in enumerate(nodes):
        components[uf.find(node)].extend(group)
    sets = tuple(sorted(tuple(sorted(c)) for c in components.values() if len(c) > 1))
    return DuplicateResult(tuple(tuple(g) for g in nodes), tuple(node_pairs), sets, len(candidates))


# --- the plan's SmartOrganizationService, ported as written -------------------------------------


class HasPrompt(Protocol):
    @property
    def id(self) -> Any: ...

    @property
    def prompt(self) -> str: ...


T = TypeVar("T", bound=HasPrompt)


def plan_similarity(prompt1: str, prompt2: str) -> float:
    """``calculateSimilarity``: lower case, split on single spaces, no other normalization."""
    words1 = set(prompt1.lower().split(" "))
    words2 = set(prompt2.lower().split(" "))
    return len(words1 & words2) / len(words1 | words2)


def plan_detect_duplicates(assets: Sequence[T]) -> list[list[T]]:
    """``detectDuplicates``: every asset against every other, ``> 0.8``.

    As in the plan, ``processed`` only skips an asset as the *outer* one: the inner filter runs
    over all assets, so an asset can appear in several sets. Word sets are built once per asset
    (the plan rebuilds them per pair); the loop and the results are the plan's.
    """
    words = [set(a.prompt.lower().split(" ")) for a in assets]
    duplicates: list[list[T]] = []
    processed: set[Any] = set()
    for i, asset in enumerate(assets):
        if asset.id in processed:
            continue
        mine = words[i]
        similar: list[T] = []
        for j, other in enumerate(assets):
            if other.id == asset.id:
                continue
            theirs = words[j]
            inter = len(mine & theirs)
            if inter / (len(mine) + len(theirs) - inter) > 0.8:
                similar.append(other)
        if similar:
            duplicates.append([asset, *similar])
            processed.update(s.id for s in similar)
        processed.add(asset.id)
    return duplicates


_PLAN_KEY_STRIP: Final = re.compile(r"[^A-Za-z0-9_\s]")


def plan_prompt_key(prompt: str) -> str:
    """``extractPromptKey``: JavaScript's ASCII ``\\w``; split on single spaces; first five."""
    return " ".join(_PLAN_KEY_STRIP.sub("", prompt.lower()).split(" ")[:5])


DEFAULT_THEMES: Final = ("portrait", "landscape", "product", "artistic", "commercial")


def plan_suggest_tags(
    prompt: str, quality: str, model_type: str | None, themes: Sequence[str] = DEFAULT_THEMES
) -> list[str]:
    """``suggestTags``: themes found inside any space-split word, then quality, then model."""
    words = prompt.lower().split(" ")
    tags = [theme for theme in themes if any(theme in word for word in words)]
    tags.append(quality)
    tags.append(model_type or "unknown")
    return tags
