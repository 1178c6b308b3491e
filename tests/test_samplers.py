"""Tests for medbalance.training.samplers: one contract over every sampler, then each one's
balance."""

from __future__ import annotations

import json
import os
import socket
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.utils.data import DataLoader, TensorDataset

from medbalance.training.samplers import (
    SAMPLERS,
    BalancedBatchSampler,
    BalancedSampler,
    OversampleSampler,
    SamplerName,
    UndersampleSampler,
    create_sampler,
    parse_sampler_spec,
)

SPECS = ["oversample", "oversample:0.5", "undersample", "balanced-batches"]
BATCH = 6  # a multiple of both 2 and 3 classes


def _labels(counts: list[int]) -> np.ndarray:
    rng = np.random.default_rng(1234)
    return rng.permutation(np.repeat(np.arange(len(counts)), counts))


# 701 items (odd, so two replicas need padding) and an undersampled epoch of 3 * 51 = 153 (odd too).
LABELS3 = _labels([500, 150, 51])
LABELS2 = _labels([900, 100])


def _make(spec: str, labels: np.ndarray, **kwargs: Any) -> BalancedSampler:
    sampler = create_sampler(spec, labels, batch_size=BATCH, **kwargs)
    assert sampler is not None
    return sampler


def _class_fractions(labels: np.ndarray, sampler: BalancedSampler, epochs: int) -> np.ndarray:
    counts = np.zeros(labels.max() + 1)
    for epoch in range(epochs):
        sampler.set_epoch(epoch)
        counts += np.bincount(labels[list(sampler)], minlength=len(counts))
    return counts / counts.sum()


def _interleave(shards: list[list[int]]) -> list[int]:
    """Put shard r back at positions r, r + R, r + 2R, ... of the global list."""
    merged = np.empty(sum(len(shard) for shard in shards), dtype=np.int64)
    for rank, shard in enumerate(shards):
        merged[rank :: len(shards)] = shard
    return merged.tolist()


@pytest.mark.parametrize("spec", SPECS)
def test_sampler_contract(spec: str) -> None:
    sampler = _make(spec, LABELS3, seed=3)
    first = list(sampler)
    assert len(first) == len(sampler) > 0
    assert all(isinstance(i, int) and 0 <= i < len(LABELS3) for i in first)
    assert list(_make(spec, LABELS3, seed=3)) == first  # same seed and epoch: same draw
    assert list(sampler) == first  # iterating again does not advance anything
    assert list(_make(spec, LABELS3, seed=4)) != first
    sampler.set_epoch(1)
    assert sampler.epoch == 1
    assert list(sampler) != first
    sampler.set_epoch(0)
    assert list(sampler) == first
    assert isinstance(sampler, SAMPLERS[spec.partition(":")[0]])
    assert sampler.class_counts_.tolist() == [500, 150, 51]
    assert sampler.class_probs_.sum() == pytest.approx(1.0)


@pytest.mark.parametrize("num_replicas", [2, 3])
@pytest.mark.parametrize("spec", SPECS)
def test_shards_are_disjoint_and_cover_the_global_draw(spec: str, num_replicas: int) -> None:
    single = _make(spec, LABELS3, seed=5, num_replicas=1, rank=0)
    shards = [
        _make(spec, LABELS3, seed=5, num_replicas=num_replicas, rank=rank)
        for rank in range(num_replicas)
    ]
    for sampler in [single, *shards]:
        sampler.set_epoch(2)
    lists = [list(shard) for shard in shards]
    assert len({len(lst) for lst in lists}) == 1
    assert all(len(lst) == len(shard) for lst, shard in zip(lists, shards, strict=True))
    # Each position of the padded global list goes to exactly one rank.
    merged = _interleave(lists)
    assert merged == shards[0].global_indices().tolist() == shards[1].global_indices().tolist()
    # As multisets: the shards hold the single-process draw plus the padding, nothing else.
    union, whole = Counter(merged), Counter(list(single))
    assert not whole - union
    padding = sum((union - whole).values())
    assert padding == len(merged) - len(single)
    assert padding < num_replicas * (BATCH if spec == "balanced-batches" else 1)


def test_none_returns_no_sampler() -> None:
    assert create_sampler("none", LABELS2) is None
    assert parse_sampler_spec("none") == (SamplerName.NONE, None)
    assert parse_sampler_spec("oversample:0.25") == (SamplerName.OVERSAMPLE, 0.25)


def test_oversample_draws_classes_uniformly() -> None:
    sampler = _make("oversample", LABELS2)
    assert len(sampler) == len(LABELS2)
    np.testing.assert_allclose(sampler.class_probs_, [0.5, 0.5])
    np.testing.assert_allclose(_class_fractions(LABELS2, sampler, epochs=20), [0.5, 0.5], atol=0.02)


@pytest.mark.parametrize("alpha", [0.0, 0.25, 0.5, 0.75, 1.0])
def test_partial_oversample_follows_the_formula(alpha: float) -> None:
    sampler = _make(f"oversample:{alpha}", LABELS2)
    counts = np.array([900.0, 100.0])
    expected = counts ** (1 - alpha) / (counts ** (1 - alpha)).sum()
    np.testing.assert_allclose(sampler.class_probs_, expected)
    np.testing.assert_allclose(sampler.sample_probs_, (expected / counts)[LABELS2])
    np.testing.assert_allclose(_class_fractions(LABELS2, sampler, epochs=20), expected, atol=0.02)


def test_oversample_limits() -> None:
    natural = OversampleSampler(labels=LABELS2, alpha=0.0)
    np.testing.assert_allclose(natural.class_probs_, [0.9, 0.1])
    np.testing.assert_allclose(natural.sample_probs_, 1 / len(LABELS2))
    np.testing.assert_allclose(_make("oversample:0.5", LABELS2).class_probs_, [0.75, 0.25])
    assert list(_make("oversample:1", LABELS2)) == list(_make("oversample", LABELS2))


def test_undersample_exact_counts_and_fresh_subsets() -> None:
    sampler = _make("undersample", LABELS2, seed=1)
    assert isinstance(sampler, UndersampleSampler)
    assert sampler.minority_count_ == 100
    assert len(sampler) == 200
    majority_subsets = []
    for epoch in range(5):
        sampler.set_epoch(epoch)
        drawn = list(sampler)
        assert len(set(drawn)) == len(drawn) == 200  # without replacement within an epoch
        assert np.bincount(LABELS2[drawn]).tolist() == [100, 100]
        assert set(drawn) >= set(np.flatnonzero(LABELS2 == 1).tolist())  # all of the minority
        assert LABELS2[drawn[:20]].tolist() != sorted(LABELS2[drawn[:20]].tolist())  # shuffled
        majority_subsets.append(frozenset(i for i in drawn if LABELS2[i] == 0))
    assert len(set(majority_subsets)) == 5


@pytest.mark.parametrize("num_replicas", [1, 2])
def test_balanced_batches_are_exactly_balanced(num_replicas: int) -> None:
    for rank in range(num_replicas):
        sampler = _make("balanced-batches", LABELS3, num_replicas=num_replicas, rank=rank)
        assert len(sampler) % BATCH == 0
        loader = DataLoader(
            TensorDataset(torch.as_tensor(LABELS3)), batch_size=BATCH, sampler=sampler
        )
        batches = [batch.tolist() for (batch,) in loader]
        assert len(batches) == len(sampler) // BATCH
        assert all(Counter(batch) == {0: 2, 1: 2, 2: 2} for batch in batches)
        assert len({tuple(batch) for batch in batches}) > 1  # class order shuffled in a batch


def test_balanced_batches_spread_use_evenly() -> None:
    sampler = _make("balanced-batches", LABELS2)
    assert isinstance(sampler, BalancedBatchSampler)
    assert sampler.num_batches_ == 167  # ceil(1000 / 6)
    uses = Counter(list(sampler))
    minority = [uses[i] for i in np.flatnonzero(LABELS2 == 1)]
    majority = [uses[i] for i in np.flatnonzero(LABELS2 == 0)]
    assert set(minority) <= {5, 6} and sum(minority) == 167 * 3  # 501 draws over 100 items
    assert set(majority) <= {0, 1} and sum(majority) == 167 * 3


def test_defaults_without_process_group_and_tensor_labels() -> None:
    sampler = _make("oversample", LABELS2)
    assert (sampler.num_replicas, sampler.rank, sampler.epoch) == (1, 0, 0)
    assert list(_make("oversample", torch.as_tensor(LABELS2))) == list(sampler)
    assert "OversampleSampler(class_counts={0: 900, 1: 100}" in repr(sampler)
    longer = _make("oversample", LABELS2, num_samples=2501, num_replicas=2, rank=1)
    assert len(longer) == 1251


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        (
            "oversampel",
            r"unknown sampler 'oversampel'; choose one of: none, oversample.*"
            r"did you mean 'oversample'\?",
        ),
        ("balanced_batches", r"did you mean 'balanced-batches'\?"),
        ("smote", r"unknown sampler 'smote'; choose one of: none, oversample, undersample"),
        ("oversample:abc", r"malformed alpha in sampler spec 'oversample:abc': 'abc' is not a"),
        ("oversample:", r"'' is not a number"),
        ("oversample:1.5", r"must be in \[0, 1\].*got 1\.5"),
        ("oversample:nan", r"must be in \[0, 1\].*got nan"),
        ("undersample:0.5", r"sampler 'undersample' takes no parameter"),
    ],
)
def test_bad_specs_are_explained(spec: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        create_sampler(spec, LABELS2)


@pytest.mark.parametrize(
    ("labels", "kwargs", "match"),
    [
        ([], {}, r"labels is empty"),
        ([0, 1, -1, 1], {}, r"class ids >= 0; got -1 at position\(s\) \[2\]"),
        ([[0, 1], [1, 0]], {}, r"labels must be 1-D.*got shape \(2, 2\)"),
        ([0.0, 1.0], {}, r"integer class ids; got dtype float64"),
        (LABELS2, {"seed": -1}, r"seed must be >= 0; got -1"),
        (LABELS2, {"num_samples": 0}, r"num_samples .* must be >= 1; got 0"),
        (LABELS2, {"num_replicas": 0}, r"num_replicas must be >= 1; got 0"),
        (
            LABELS2,
            {"num_replicas": 2, "rank": 2},
            r"rank must be in \[0, num_replicas\) = \[0, 2\)",
        ),
    ],
)
def test_bad_inputs_are_explained(labels: Any, kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        create_sampler("oversample", labels, **kwargs)


def test_bad_parameters_are_explained() -> None:
    with pytest.raises(ValueError, match=r"alpha must be in \[0, 1\].*got 1\.5"):
        OversampleSampler(labels=LABELS2, alpha=1.5)
    with pytest.raises(
        ValueError, match=r"multiple of the 3 classes.*batch_size=5; use e\.g\. 3 or 6"
    ):
        create_sampler("balanced-batches", LABELS3, batch_size=5)
    with pytest.raises(ValueError, match=r"balanced-batches needs batch_size"):
        create_sampler("balanced-batches", LABELS3)
    with pytest.raises(ValueError, match=r"undersample draws exactly .* num_samples=10 cannot"):
        create_sampler("undersample", LABELS3, num_samples=10)
    with pytest.raises(ValueError, match=r"epoch must be >= 0; got -1"):
        _make("undersample", LABELS3).set_epoch(-1)


def _ddp_worker(rank: int, world_size: int, port: int, out: str) -> None:
    """One gloo process: build every sampler from the process group, gather, rank 0 checks."""
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    try:
        report: dict[str, Any] = {}
        for spec in SPECS:
            sampler = _make(spec, LABELS3, seed=7)  # num_replicas and rank from the group
            sampler.set_epoch(1)
            mine = {"rank": sampler.rank, "replicas": sampler.num_replicas, "idx": list(sampler)}
            gathered: list[Any] = [None] * world_size
            dist.all_gather_object(gathered, mine)
            if rank == 0:
                single = _make(spec, LABELS3, seed=7, num_replicas=1, rank=0)
                single.set_epoch(1)
                shards = [g["idx"] for g in gathered]
                union, whole = Counter(_interleave(shards)), Counter(list(single))
                pad = sampler.total_size - len(single)
                report[spec] = {
                    "ranks": [(g["rank"], g["replicas"]) for g in gathered],
                    "lengths": [len(shard) for shard in shards],
                    "positions_match": _interleave(shards) == sampler.global_indices().tolist(),
                    "missing": sum((whole - union).values()),
                    "padding": sum((union - whole).values()),
                    "pad_expected": pad,
                    "padding_is_head": union - whole == Counter(list(single)[:pad]),
                    "single_counts": np.bincount(LABELS3[list(single)], minlength=3).tolist(),
                    "ddp_counts": np.bincount(LABELS3[_interleave(shards)], minlength=3).tolist(),
                    "head_counts": np.bincount(LABELS3[list(single)[:pad]], minlength=3).tolist(),
                }
        if rank == 0:
            Path(out).write_text(json.dumps(report))
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_two_gloo_processes_share_one_balanced_draw(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    out = tmp_path / "ddp.json"
    mp.spawn(_ddp_worker, args=(2, port, str(out)), nprocs=2, join=True)
    report = json.loads(out.read_text())
    assert sorted(report) == sorted(SPECS)
    for spec, result in report.items():
        assert result["ranks"] == [[0, 2], [1, 2]], spec
        assert result["lengths"][0] == result["lengths"][1], spec
        assert result["positions_match"], spec
        assert result["missing"] == 0, spec
        assert result["padding"] == result["pad_expected"] > 0, spec
        assert result["padding_is_head"], spec  # the padding repeats the draw from its start
        # Class balance across ranks = the single-process draw's, plus the repeated head.
        single, head = np.array(result["single_counts"]), np.array(result["head_counts"])
        assert result["ddp_counts"] == (single + head).tolist(), spec
        if spec == "balanced-batches":
            assert len(set(result["ddp_counts"])) == 1, result["ddp_counts"]


# --- dual:RATE (binary) ---------------------------------------------------------------------------
DUAL_SPECS = ["dual:0.2", "dual:0.5", "dual"]


@pytest.mark.parametrize("spec", DUAL_SPECS)
def test_dual_sampler_contract(spec: str) -> None:
    # the contract of test_sampler_contract, on binary labels (dual refuses three classes)
    sampler = _make(spec, LABELS2, seed=3)
    first = list(sampler)
    assert len(first) == len(sampler) > 0
    assert all(isinstance(i, int) and 0 <= i < len(LABELS2) for i in first)
    assert list(_make(spec, LABELS2, seed=3)) == first
    assert list(sampler) == first
    assert list(_make(spec, LABELS2, seed=4)) != first
    sampler.set_epoch(1)
    assert list(sampler) != first
    sampler.set_epoch(0)
    assert list(sampler) == first
    assert isinstance(sampler, SAMPLERS["dual"])
    assert sampler.class_counts_.tolist() == [900, 100]
    assert sampler.class_probs_.sum() == pytest.approx(1.0)


@pytest.mark.parametrize("num_replicas", [2, 3])
@pytest.mark.parametrize("spec", DUAL_SPECS)
def test_dual_shards_are_disjoint_and_cover_the_global_draw(spec: str, num_replicas: int) -> None:
    single = _make(spec, LABELS2, seed=5, num_replicas=1, rank=0)
    shards = [
        _make(spec, LABELS2, seed=5, num_replicas=num_replicas, rank=rank)
        for rank in range(num_replicas)
    ]
    for sampler in [single, *shards]:
        sampler.set_epoch(2)
    lists = [list(shard) for shard in shards]
    assert len({len(lst) for lst in lists}) == 1
    merged = _interleave(lists)
    assert merged == shards[0].global_indices().tolist()
    union, whole = Counter(merged), Counter(list(single))
    assert not whole - union
    assert sum((union - whole).values()) == len(merged) - len(single) < num_replicas * BATCH


@pytest.mark.parametrize(("rate", "batch_size"), [(0.2, 32), (0.2, 6), (0.5, 10), (0.05, 16)])
@pytest.mark.parametrize("num_replicas", [1, 2])
def test_dual_batches_hold_at_least_the_rate_of_positives(
    rate: float, batch_size: int, num_replicas: int
) -> None:
    for rank in range(num_replicas):
        sampler = create_sampler(
            f"dual:{rate}", LABELS2, batch_size=batch_size, num_replicas=num_replicas, rank=rank
        )
        assert isinstance(sampler, SAMPLERS["dual"])
        assert sampler.positive_ == 1  # the minority class
        drawn = LABELS2[list(sampler)].reshape(-1, batch_size)  # this rank's batches, in order
        positives = (drawn == 1).mean(axis=1)
        assert (positives >= rate).all()
        assert (positives == sampler.positives_per_batch_ / batch_size).all()
        assert sampler.class_probs_[1] == pytest.approx(sampler.positives_per_batch_ / batch_size)


def test_dual_uses_every_negative_evenly_and_takes_a_positive_class() -> None:
    sampler = create_sampler("dual:0.2", LABELS2, batch_size=10)
    assert sampler is not None
    uses = np.bincount(list(sampler), minlength=len(LABELS2))[LABELS2 == 0]
    assert uses.max() - uses.min() <= 1
    flipped = SAMPLERS["dual"](labels=LABELS2, positive_rate=0.3, batch_size=10, positive=0)
    assert (LABELS2[list(flipped)].reshape(-1, 10) == 0).sum(axis=1).min() == 3


@pytest.mark.parametrize(
    ("spec", "kwargs", "match"),
    [
        ("dual:0", {}, r"rate in sampler spec 'dual:0' must be a number in \(0, 1\)"),
        ("dual:1.5", {}, r"must be a number in \(0, 1\).*e\.g\. dual:0\.2"),
        ("dual:x", {}, r"got 'x'; e\.g\. dual:0\.2"),
        ("dual:0.2", {"labels": LABELS3}, r"two classes \(positives and negatives\); got 3"),
        ("dual:0.2", {"batch_size": None}, "dual needs batch_size"),
        ("dual:0.2", {"batch_size": 1}, r"dual needs batch_size >= 2"),
    ],
)
def test_dual_bad_specs_are_explained(spec: str, kwargs: dict[str, Any], match: str) -> None:
    options = {"batch_size": BATCH, **kwargs}
    labels = options.pop("labels", LABELS2)
    with pytest.raises(ValueError, match=match):
        create_sampler(spec, labels, **options)
