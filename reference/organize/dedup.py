"""Near-duplicate prompts: normalization, word-pair shingles, MinHash signatures, LSH banding,
exact confirmation; and the plan's all-pairs ``detectDuplicates``, ported as the baseline.

Pure computation, no I/O of its own: :mod:`reference.organize.index` stores the signatures and
serves the answer (an LSH index on Redis storage is the caller's to configure).

Normalization: NFKC, case-folded; apostrophes dropped inside words ("wizard's" = "wizards"); any
other non-word character (punctuation, ``_``) separates words; whitespace collapses. Shingles are
word pairs (bigrams): unlike single words they keep word order, and on the 12-30 word prompts of a
generation app one changed word moves the Jaccard similarity from 1 to about 0.8-0.9, the range
the plan's 0.8 threshold is meant to catch. A one-word prompt's only shingle is that word.

Signatures are datasketch's ``MinHash(num_perm=NUM_PERM, seed=HASH_SEED)`` (scheme "affine32":
SHA-1's first 32 bits of each shingle, the MurmurHash3 finalizer, ``a*h+b mod 2**32``), bit for
bit; :func:`signatures` computes them for many sets at once with numpy (``tests/test_dedup.py``
proves it equal to datasketch on thousands of prompts). The LSH index is datasketch's
``MinHashLSH`` with ``BANDS`` bands of ``ROWS`` rows, chosen for recall at 0.8 (datasketch's own
choice for 0.8 misses about a quarter of the pairs at the threshold); every candidate pair is
confirmed by exact Jaccard on the shingle sets, so LSH costs only recall, never precision.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import re
import unicodedata
from collections import defaultdict
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Protocol, TypeVar

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    # Imported where used: datasketch pulls in scipy (about a second per process), and most
    # processes that import this module (every service worker, the CLIs) never build an index.
    from datasketch import LeanMinHash, MinHash, MinHashLSH

NUM_PERM: Final = 128
BANDS: Final = 21
ROWS: Final = 6
DEFAULT_THRESHOLD: Final = 0.8
SIGNATURE_BYTES: Final = NUM_PERM * 4
HASH_SEED: Final = 20_250_108
SCHEME: Final = "affine32"
#: Keys per pipelined round trip when an index lives on Redis.
LSH_BUFFER: Final = 10_000
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


@functools.lru_cache(maxsize=1 << 18)
def _shingle_hash(shingle: str) -> bytes:
    return hashlib.sha1(shingle.encode()).digest()[:4]  # noqa: S324


def _sha1_32(shingles: Iterable[str]) -> bytes:
    """datasketch's ``sha1_hash32`` of each shingle, as packed little-endian uint32 (word
    pairs repeat across prompts: each is hashed once)."""
    return b"".join(map(_shingle_hash, shingles))


@functools.cache
def _permutations() -> tuple[npt.NDArray[np.uint32], npt.NDArray[np.uint32]]:
    from datasketch import MinHash

    a, b = MinHash(num_perm=NUM_PERM, seed=HASH_SEED, scheme=SCHEME).permutations
    return a.astype(np.uint32), b.astype(np.uint32)


def _fmix32(h: npt.NDArray[np.uint32]) -> npt.NDArray[np.uint32]:
    """MurmurHash3's 32-bit finalizer, as datasketch applies it before the permutations."""
    h = h ^ (h >> np.uint32(16))
    h = h * np.uint32(0x85EBCA6B)
    h = h ^ (h >> np.uint32(13))
    h = h * np.uint32(0xC2B2AE35)
    return h ^ (h >> np.uint32(16))


_EMPTY_SIGNATURE: Final = np.full(NUM_PERM, np.iinfo(np.uint32).max, dtype=np.uint32)


def signatures(shingle_sets: Sequence[Iterable[str]]) -> Signatures:
    """MinHash signatures, one row of ``NUM_PERM`` uint32 per set (an empty set: all ones),
    equal to datasketch's for the same sets."""
    perm_a, perm_b = _permutations()
    packed: list[bytes] = []
    lengths = np.empty(len(shingle_sets), dtype=np.int64)
    for i, items in enumerate(shingle_sets):
        chunk = _sha1_32(items)
        packed.append(chunk)
        lengths[i] = len(chunk) // 4
    values = _fmix32(np.frombuffer(b"".join(packed), dtype="<u4").astype(np.uint32))
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
        buf = np.multiply(values[lo:hi, None], perm_a[None, :])
        buf += perm_b
        out[rows] = np.minimum.reduceat(buf, offsets[rows] - lo, axis=0)
        first = last
    return out


def datasketch_minhashes(shingle_sets: Sequence[Iterable[str]]) -> list[MinHash]:
    """The same signatures the documented way: datasketch's ``MinHash.bulk``, one per set."""
    from datasketch import MinHash

    encoded = [[s.encode() for s in items] for items in shingle_sets]
    return MinHash.bulk(encoded, num_perm=NUM_PERM, seed=HASH_SEED, scheme=SCHEME)  # type: ignore[no-any-return]


def lean_minhashes(sigs: Signatures) -> list[LeanMinHash]:
    """``LeanMinHash`` views of signature rows. The array is checked once as a whole: the
    per-sketch check of ``LeanMinHash(...)`` doubles the cost of filling an index."""
    if sigs.dtype != np.uint32 or sigs.ndim != 2 or sigs.shape[1] != NUM_PERM:
        raise ValueError(
            f"expected (n, {NUM_PERM}) uint32 signatures, got {sigs.dtype} {sigs.shape}"
        )
    from datasketch import LeanMinHash

    out: list[LeanMinHash] = []
    for row in sigs:
        sketch = LeanMinHash.__new__(LeanMinHash)
        sketch.seed, sketch.scheme, sketch.hashvalues = HASH_SEED, SCHEME, row
        out.append(sketch)
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


def new_lsh(storage_config: dict[str, Any] | None = None) -> MinHashLSH:
    """An empty ``MinHashLSH`` with this module's bands, in memory unless ``storage_config`` says
    otherwise. Keys are stored as given (bytes on Redis), never pickled."""
    from datasketch import MinHashLSH

    return MinHashLSH(
        num_perm=NUM_PERM,
        params=(BANDS, ROWS),
        storage_config=storage_config or {"type": "dict"},
        prepickle=False,
    )


def lsh_insert(
    lsh: MinHashLSH, names: Sequence[Hashable], sigs: Signatures | Sequence[MinHash]
) -> None:
    sketches = lean_minhashes(sigs) if isinstance(sigs, np.ndarray) else sigs
    with lsh.insertion_session(buffer_size=LSH_BUFFER) as session:
        for name, sketch in zip(names, sketches, strict=True):
            session.insert(name, sketch, check_duplication=False)


def lsh_buckets(lsh: MinHashLSH) -> list[set[Any]]:
    """Every band's buckets that hold two or more keys: the candidate groups."""
    groups: list[set[Any]] = []
    for table in lsh.hashtables:
        full = [key for key, n in table.itemcounts().items() if n > 1]
        for start in range(0, len(full), LSH_BUFFER):
            groups.extend(set(g) for g in table.getmany(*full[start : start + LSH_BUFFER]))
    return groups


_MIX: Final = np.uint64(0x9E3779B97F4A7C15)


def band_groups(sigs: Signatures) -> list[list[int]]:
    """What an in-memory ``MinHashLSH`` with these bands holds, computed with numpy: every
    band's buckets of two or more rows (row indexes), one sort per band instead of a dictionary
    insert per row and band (a million signatures in seconds, where datasketch takes minutes).
    A bucket is keyed by a 64-bit hash of the band's values where datasketch keys it by the
    values: two different bands share a key with odds of about n^2 / 2^65, and the pair that
    proposes is then rejected by the exact confirmation like any other candidate."""
    groups: list[list[int]] = []
    if len(sigs) < 2:
        return groups
    for band in range(BANDS):
        values = sigs[:, band * ROWS : (band + 1) * ROWS].astype(np.uint64)
        key = np.zeros(len(sigs), dtype=np.uint64)
        for column in values.T:
            key = (key ^ column) * _MIX
            key ^= key >> np.uint64(29)
        order = np.argsort(key, kind="stable")
        ordered = key[order]
        starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
        sizes = np.diff(np.r_[starts, len(ordered)])
        for start, size in zip(starts[sizes > 1].tolist(), sizes[sizes > 1].tolist(), strict=True):
            groups.append(order[start : start + size].tolist())
    return groups


def candidate_pairs(groups: Iterable[Iterable[int]]) -> set[tuple[int, int]]:
    pairs: set[tuple[int, int]] = set()
    for bucket in groups:
        members = sorted(bucket)
        for i, left in enumerate(members):
            pairs.update((left, right) for right in members[i + 1 :])
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
    sigs: Signatures | Sequence[MinHash],
    shingles_of: Callable[[int], frozenset[str]],
    threshold: float = DEFAULT_THRESHOLD,
    lsh: MinHashLSH | None = None,
    names: Sequence[bytes] | None = None,
    filled: bool = False,
) -> DuplicateResult:
    """Near-duplicate sets among items with normalized-text ``keys`` and MinHash ``sigs``.

    Items with the same text key are one node (their normalized texts are equal, Jaccard 1);
    LSH runs over one representative per node and each candidate pair of nodes is confirmed by
    exact Jaccard on ``shingles_of(representative)``. Sets are the connected components of the
    confirmed pairs, each sorted, listed by their first member.

    ``lsh`` (an index on shared storage) holds the representatives under ``names[item]``
    (default: the item's position); ``filled`` says another process already inserted them.
    Without one, signature arrays are banded by :func:`band_groups` (the same buckets as an
    in-memory ``MinHashLSH``), other sketches go through a new in-memory ``MinHashLSH``.
    """
    members: dict[int, list[int]] = defaultdict(list)
    for i, key in enumerate(keys):
        members[key].append(i)
    nodes = list(members.values())
    reps = [m[0] for m in nodes]
    if lsh is None and isinstance(sigs, np.ndarray):
        candidates = candidate_pairs(band_groups(sigs[reps]))
    else:
        index = new_lsh() if lsh is None else lsh
        rep_names: list[Hashable] = (
            list(range(len(reps))) if names is None else [names[r] for r in reps]
        )
        if not filled:
            lsh_insert(
                index,
                rep_names,
                sigs[reps] if isinstance(sigs, np.ndarray) else [sigs[r] for r in reps],
            )
        node_of = {name: node for node, name in enumerate(rep_names)}
        candidates = candidate_pairs(
            [node_of[n] for n in bucket if n in node_of] for bucket in lsh_buckets(index)
        )
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
