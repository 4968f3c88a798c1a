from __future__ import annotations

import itertools
import json
import statistics
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from fixtures.generate import (
    IMAGE_COLUMNS,
    JOB_COLUMNS,
    PROJECT_COLUMNS,
    TRUTH_COLUMNS,
    VIDEO_COLUMNS,
    Batch,
    VariantKind,
    assets_per_user,
    expected_assets,
    generate,
    heavy_user_id,
    iter_batches,
    make_variant,
    prompt_tokens,
    user_ids,
)
from fixtures.spec import SCALES, DatasetSpec, spec_for
from reference.assets import ModelType, Quality, Status

NOW = datetime(2025, 3, 14, 15, 0, tzinfo=UTC)
THEMES = ("portrait", "landscape", "product", "artistic", "commercial")


def bigrams(prompt: str) -> set[tuple[str, str]]:
    tokens = prompt_tokens(prompt)
    return set(itertools.pairwise(tokens))


def jaccard(a: str, b: str) -> float:
    x, y = bigrams(a), bigrams(b)
    return len(x & y) / len(x | y)


def asset_view(columns: tuple[str, ...], row: tuple[Any, ...], kind: str) -> Any:
    values = dict(zip(columns, row, strict=True))
    meta = None if values["metadata"] is None else json.loads(values["metadata"])
    return SimpleNamespace(kind=kind, meta=meta, **values)


def assets_of(batch: Batch) -> list[Any]:
    return [asset_view(IMAGE_COLUMNS, r, "image") for r in batch.images] + [
        asset_view(VIDEO_COLUMNS, r, "video") for r in batch.videos
    ]


@pytest.fixture(scope="module")
def spec() -> DatasetSpec:
    return spec_for("small", now=NOW)


@pytest.fixture(scope="module")
def data(spec: DatasetSpec) -> Batch:
    return generate(spec)


@pytest.fixture(scope="module")
def assets(data: Batch) -> list[Any]:
    return assets_of(data)


@pytest.fixture(scope="module")
def family_of(data: Batch) -> dict[Any, int]:
    return {asset_id: family for asset_id, _, family in data.truth}


def test_same_seed_gives_identical_rows(spec: DatasetSpec, data: Batch) -> None:
    again = generate(spec_for("small", now=NOW))
    assert again == data


def test_different_seed_gives_different_rows(spec: DatasetSpec, data: Batch) -> None:
    other = generate(spec_for("small", seed=spec.seed + 1, now=NOW))
    assert {r[0] for r in other.images}.isdisjoint({r[0] for r in data.images})
    assert {r[3] for r in other.images} != {r[3] for r in data.images}
    assert heavy_user_id(spec) != heavy_user_id(spec_for("small", seed=spec.seed + 1))


def test_batching_does_not_change_rows(spec: DatasetSpec, data: Batch) -> None:
    pieces = list(iter_batches(spec, batch_assets=300))
    assert len(pieces) > 5
    joined = Batch()
    for piece in pieces:
        joined.extend(piece)
    assert joined == data


def test_ids_do_not_depend_on_reference_time(spec: DatasetSpec, data: Batch) -> None:
    later = generate(spec_for("small", now=NOW + timedelta(days=3, hours=5)))
    assert [r[0] for r in later.images] == [r[0] for r in data.images]
    assert [r[3] for r in later.images] == [r[3] for r in data.images]


def test_rows_match_column_constants(data: Batch) -> None:
    for rows, columns in (
        (data.projects, PROJECT_COLUMNS),
        (data.images, IMAGE_COLUMNS),
        (data.videos, VIDEO_COLUMNS),
        (data.jobs, JOB_COLUMNS),
        (data.truth, TRUTH_COLUMNS),
    ):
        assert rows
        assert {len(r) for r in rows} == {len(columns)}


def test_scales_and_spec_for() -> None:
    assert set(SCALES) == {"tiny", "small", "plan", "100k", "1m"}
    assert SCALES["plan"].heavy_assets == 10_000
    assert SCALES["1m"].heavy_assets == 1_000_000
    spec = spec_for("tiny", seed=3, heavy=123)
    assert (spec.seed, spec.heavy_assets) == (3, 123)
    assert spec.now is not None
    assert spec.now.minute == spec.now.second == spec.now.microsecond == 0
    with pytest.raises(ValueError, match=r"unknown scale 'huge'.*tiny"):
        spec_for("huge")
    with pytest.raises(ValueError, match="video_fraction"):
        DatasetSpec(video_fraction=1.5)


def test_heavy_user_has_exactly_heavy_assets(spec: DatasetSpec, assets: list[Any]) -> None:
    per_user = Counter(a.user_id for a in assets)
    users = user_ids(spec)
    assert users[0] == heavy_user_id(spec)
    assert len(set(users)) == len(users) == spec.other_users + 1
    assert per_user[users[0]] == spec.heavy_assets
    assert set(per_user) == set(users)
    assert sum(per_user.values()) == expected_assets(spec) == len(assets)
    assert list(assets_per_user(spec)) == [per_user[u] for u in users]


def test_assets_per_user_are_skewed(spec: DatasetSpec, assets: list[Any]) -> None:
    per_user = Counter(a.user_id for a in assets)
    others = [n for user, n in per_user.items() if user != heavy_user_id(spec)]
    assert max(per_user.values()) == spec.heavy_assets
    assert statistics.mean(others) > 1.3 * statistics.median(others)
    assert statistics.pstdev(others) > 0.6 * statistics.mean(others)
    assert abs(statistics.mean(others) - spec.mean_assets) < 0.2 * spec.mean_assets


def test_vocabularies_and_mix(assets: list[Any]) -> None:
    video_share = sum(a.kind == "video" for a in assets) / len(assets)
    assert 0.10 < video_share < 0.20
    models = Counter(a.model_type for a in assets)
    assert set(models) == {*(m.value for m in ModelType), None}
    assert not any(a.model_type == ModelType.SDXL for a in assets if a.kind == "video")
    assert {a.quality for a in assets} == {q.value for q in Quality}
    statuses = Counter(a.status for a in assets)
    assert set(statuses) == {s.value for s in Status}
    assert statuses[Status.COMPLETED] > 0.85 * len(assets)


def test_metadata_keys_are_often_absent(assets: list[Any]) -> None:
    metas = [a.meta for a in assets]
    without_key = sum(m is None or "workspace_dismissed" not in m for m in metas) / len(metas)
    assert 0.62 < without_key < 0.78
    dismissed = Counter(m.get("workspace_dismissed") for m in metas if m)
    assert dismissed[True] > 0.05 * len(metas)
    assert dismissed[False] > 0.05 * len(metas)
    null_share = sum(m is None for m in metas) / len(metas)
    assert 0.01 < null_share < 0.06
    assert any(a.metadata == "{}" for a in assets)
    no_job = sum(m is None or "job_id" not in m for m in metas) / len(metas)
    assert 0.06 < no_job < 0.15


def test_model_flags_agree_with_model(assets: list[Any]) -> None:
    flagged = [a for a in assets if a.meta]
    assert any("is_sdxl" in a.meta for a in flagged)
    assert any("enhanced" in a.meta for a in flagged)
    for a in flagged:
        if a.meta.get("is_sdxl"):
            assert a.model_type == ModelType.SDXL
        if a.meta.get("enhanced"):
            assert a.model_type == ModelType.ENHANCED
    sdxl = [a for a in flagged if a.model_type == "SDXL"]
    assert sum(a.meta.get("is_sdxl") is True for a in sdxl) > 0.4 * len(sdxl)


def test_times_span_months_and_today_has_assets(spec: DatasetSpec, assets: list[Any]) -> None:
    day_start = NOW.replace(hour=0)
    assert all(NOW - timedelta(days=186) <= a.created_at <= NOW for a in assets)
    assert min(a.created_at for a in assets) < NOW - timedelta(days=150)
    assert all(a.created_at.tzinfo is not None for a in assets)
    per_user = Counter(a.user_id for a in assets)
    today = Counter(a.user_id for a in assets if a.created_at >= day_start)
    busy = [u for u, n in per_user.items() if n >= 50]
    assert len(busy) > 10
    assert all(today[u] > 0 for u in busy)


def test_today_has_assets_even_at_midnight() -> None:
    midnight = datetime(2025, 3, 14, tzinfo=UTC)
    batch = generate(spec_for("tiny", now=midnight))
    heavy = heavy_user_id(spec_for("tiny"))
    today = [a for a in assets_of(batch) if a.user_id == heavy and a.created_at >= midnight]
    assert today
    assert all(a.created_at == midnight for a in today)


def test_sessions_are_bursts(spec: DatasetSpec, assets: list[Any]) -> None:
    heavy = heavy_user_id(spec)
    times = np.array(sorted(a.created_at.timestamp() for a in assets if a.user_id == heavy))
    gaps = np.diff(times)
    assert np.median(gaps) < 120
    assert gaps.max() > 86_400 / 4


def test_jobs_group_one_to_four_assets(
    data: Batch, assets: list[Any], family_of: dict[Any, int]
) -> None:
    jobs: dict[str, dict[str, Any]] = {
        str(r[0]): dict(zip(JOB_COLUMNS, r, strict=True)) for r in data.jobs
    }
    by_job: dict[str, list[Any]] = defaultdict(list)
    for a in assets:
        if a.meta and "job_id" in a.meta:
            by_job[a.meta["job_id"]].append(a)
    assert len(by_job) > 0.8 * len(jobs)
    for job_id, members in by_job.items():
        job, first = jobs[job_id], members[0]
        assert (job["user_id"], job["job_type"], job["project_id"]) == (
            first.user_id,
            first.kind,
            first.project_id,
        )
        assert {(a.prompt, a.quality, a.model_type, a.status) for a in members} == {
            (first.prompt, job["quality"], job["model_type"], job["status"])
        }
        assert len({family_of[a.id] for a in members}) == 1
        assert job["created_at"] <= min(a.created_at for a in members)
        if job["job_type"] == "image":
            assert json.loads(job["metadata"])["num_images"] == len(members)
            assert (job["image_id"], job["video_id"]) == (first.id, None)
        else:
            assert len(members) == 1
            assert (job["image_id"], job["video_id"]) == (None, first.id)
    image_jobs = [json.loads(j["metadata"])["num_images"] for j in jobs.values() if j["image_id"]]
    assert set(image_jobs) == {1, 2, 3, 4}
    assert sum(image_jobs) == len(data.images)
    assert sum(1 for j in jobs.values() if j["video_id"]) == len(data.videos)
    asset_ids = {a.id for a in assets}
    assert all((j["image_id"] or j["video_id"]) in asset_ids for j in jobs.values())


def test_projects_belong_to_their_user(data: Batch, assets: list[Any]) -> None:
    projects = {r[0]: r for r in data.projects}
    assert all(title for _, _, title, _ in data.projects)
    in_project = [a for a in assets if a.project_id is not None]
    assert 0.5 < len(in_project) / len(assets) < 0.8
    for a in in_project:
        _, owner, _, created = projects[a.project_id]
        assert owner == a.user_id
        assert created <= a.created_at


def test_storage_paths_are_unique_and_shaped(assets: list[Any]) -> None:
    paths = [a.storage_path for a in assets]
    thumbs = [a.thumbnail_path for a in assets]
    assert len(set(paths)) == len(paths)
    assert len(set(thumbs)) == len(thumbs)
    for a in assets:
        folder = a.meta.get("job_id") if a.meta else None
        stem = f"{a.user_id}/{folder or a.id}/"
        assert a.storage_path.startswith(stem)
        assert a.storage_path.endswith(".mp4" if a.kind == "video" else ".png")
        assert a.thumbnail_path.startswith(stem)
        assert a.thumbnail_path.endswith(".thumb.webp")
        assert "bucket" not in a.storage_path


def test_prompts_look_like_prompts(assets: list[Any], family_of: dict[Any, int]) -> None:
    prompts = {a.prompt for a in assets}
    lengths = [len(prompt_tokens(p)) for p in prompts]
    assert min(lengths) >= 12
    assert max(lengths) <= 31
    assert sum(n <= 30 for n in lengths) > 0.97 * len(lengths)
    assert sum("," in p for p in prompts) > 0.9 * len(prompts)
    assert any(p[0].isupper() for p in prompts)
    assert any(p[0].islower() for p in prompts)
    text = " ".join(prompts).lower()
    assert all(theme in text for theme in THEMES)


def test_near_duplicate_families(assets: list[Any], family_of: dict[Any, int]) -> None:
    by_family: dict[int, list[Any]] = defaultdict(list)
    for a in assets:
        by_family[family_of[a.id]].append(a)
    kinds: Counter[VariantKind] = Counter()
    for members in by_family.values():
        assert len({a.user_id for a in members}) == 1
        base = min(members, key=lambda a: a.created_at).prompt
        for prompt in {a.prompt for a in members} - {base}:
            assert jaccard(base, prompt) >= 0.8, (base, prompt)
            a_tokens, b_tokens = prompt_tokens(base), prompt_tokens(prompt)
            if a_tokens == b_tokens:
                kinds[VariantKind.RESTYLED] += 1
            elif b_tokens[:-1] == a_tokens:
                kinds[VariantKind.APPENDED] += 1
            else:
                assert len(a_tokens) == len(b_tokens)
                assert sum(x != y for x, y in zip(a_tokens, b_tokens, strict=True)) == 1
                kinds[VariantKind.SUBSTITUTED] += 1
    assert len(kinds) == 3, kinds
    assert min(kinds.values()) >= 10
    multi = sum(len({a.prompt for a in m}) > 1 for m in by_family.values())
    assert multi > 0.05 * len(by_family)
    reused = [
        prompt
        for members in by_family.values()
        for prompt in {a.prompt for a in members}
        if len({a.meta.get("job_id") for a in members if a.prompt == prompt and a.meta}) > 1
    ]
    assert reused, "no prompt reused verbatim by a later job"


def test_unrelated_prompts_are_far_apart(assets: list[Any], family_of: dict[Any, int]) -> None:
    first: dict[int, str] = {}
    for a in assets:
        first.setdefault(family_of[a.id], a.prompt)
    prompts = list(first.values())
    rng = np.random.default_rng(0)
    pairs = rng.integers(0, len(prompts), (3000, 2))
    scores = [jaccard(prompts[i], prompts[j]) for i, j in pairs.tolist() if i != j]
    assert max(scores) < 0.5
    assert statistics.mean(scores) < 0.05


@pytest.mark.parametrize("kind", list(VariantKind))
def test_make_variant(kind: VariantKind, assets: list[Any]) -> None:
    bases = sorted({a.prompt for a in assets})[:200]
    for r, base in enumerate(bases):
        variant = make_variant(base, kind, r)
        tokens, base_tokens = prompt_tokens(variant), prompt_tokens(base)
        if kind is VariantKind.IDENTICAL:
            assert variant == base
        elif kind is VariantKind.RESTYLED:
            assert variant != base
            assert tokens == base_tokens
        else:
            assert tokens != base_tokens
            assert jaccard(base, variant) >= 0.8
