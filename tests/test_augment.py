"""Batch transforms: shapes, ranges, determinism, no vertical flip, validation, normalisation."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from medbalance.models.augment import (
    AugmentConfig,
    BatchTransform,
    Normalization,
    NormStats,
    fit_normalization,
)

MINMAX = NormStats(Normalization.MINMAX)
FIXED = NormStats(Normalization.FIXED)


def _images(batch: int, channels: int, side: int, seed: int = 0) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    return torch.from_numpy(rng.integers(0, 256, (batch, channels, side, side), dtype=np.uint8))


def _halves(batch: int, side: int, *, axis: int) -> torch.Tensor:
    """Bright first half (top for axis 2, left for axis 3), dark second half."""
    image = torch.full((batch, 1, side, side), 60, dtype=torch.uint8)
    index = [slice(None)] * 4
    index[axis] = slice(0, side // 2)
    image[tuple(index)] = 200
    return image


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("batch", [1, 5])
@pytest.mark.parametrize("train", [True, False])
@pytest.mark.parametrize("norm", [MINMAX, FIXED])
def test_shape_dtype_range(channels: int, batch: int, train: bool, norm: NormStats) -> None:
    transform = BatchTransform(AugmentConfig(), 28, norm)
    out = transform(_images(batch, channels, 36), train=train)
    assert out.shape == (batch, channels, 28, 28)
    assert out.dtype == torch.float32
    assert out.min() >= 0.0 and out.max() <= 1.0


def test_minmax_eval_spans_zero_to_one_per_sample() -> None:
    out = BatchTransform(AugmentConfig(), 28, MINMAX)(_images(6, 3, 36), train=False)
    torch.testing.assert_close(out.amin(dim=(1, 2, 3)), torch.zeros(6))
    torch.testing.assert_close(out.amax(dim=(1, 2, 3)), torch.ones(6))


def test_eval_is_plain_resize_and_normalisation() -> None:
    x = _images(4, 1, 36)
    transform = BatchTransform(AugmentConfig(), 28, MINMAX)
    resized = F.interpolate(x.float() / 255, size=(28, 28), mode="bilinear", antialias=True)
    low, high = resized.amin(dim=(1, 2, 3), keepdim=True), resized.amax(dim=(1, 2, 3), keepdim=True)
    expected = (resized - low) / (high - low)
    first, second = transform(x, train=False), transform(x, train=False)
    assert torch.equal(first, second)
    torch.testing.assert_close(first, expected)


def test_eval_keeps_the_corners() -> None:
    x = torch.zeros(1, 1, 36, 36, dtype=torch.uint8)
    for rows in (slice(0, 4), slice(32, 36)):
        for cols in (slice(0, 4), slice(32, 36)):
            x[0, 0, rows, cols] = 255
    out = BatchTransform(AugmentConfig(), 28, FIXED)(x, train=False)[0, 0]
    assert min(out[0, 0], out[0, -1], out[-1, 0], out[-1, -1]) > 0.9
    assert out[14, 14] == 0.0


def test_train_is_random_but_seeded() -> None:
    x = _images(4, 1, 36)
    transform = BatchTransform(AugmentConfig(), 28, MINMAX)
    torch.manual_seed(3)
    first, second = transform(x, train=True), transform(x, train=True)
    torch.manual_seed(3)
    again = transform(x, train=True)
    assert not torch.equal(first, second)
    assert not torch.allclose(first, transform(x, train=False))
    assert torch.equal(first, again)
    generated = [transform(x, train=True, generator=torch.Generator().manual_seed(7)) for _ in "ab"]
    assert torch.equal(*generated)


def test_each_sample_draws_its_own_augmentation() -> None:
    x = _images(1, 1, 36).repeat(2, 1, 1, 1)
    out = BatchTransform(AugmentConfig(), 28, MINMAX)(x, train=True)
    assert not torch.allclose(out[0], out[1])


@pytest.mark.parametrize("hflip", [False, True])
def test_never_flips_vertically(hflip: bool) -> None:
    torch.manual_seed(0)
    transform = BatchTransform(AugmentConfig(hflip=hflip), 28, MINMAX)
    out = transform(_halves(50, 36, axis=2), train=True)  # 50 independent draws
    top, bottom = out[..., :10, :].mean(dim=(1, 2, 3)), out[..., 18:, :].mean(dim=(1, 2, 3))
    assert bool((top > bottom + 0.2).all())


def test_horizontal_flip_only_when_asked() -> None:
    torch.manual_seed(0)
    x = _halves(200, 36, axis=3)
    for hflip, low, high in ((False, 0, 0), (True, 60, 140)):
        out = BatchTransform(AugmentConfig(hflip=hflip), 28, MINMAX)(x, train=True)
        flipped = out[..., :, :10].mean(dim=(1, 2, 3)) < out[..., :, 18:].mean(dim=(1, 2, 3))
        assert low <= int(flipped.sum()) <= high


@pytest.mark.parametrize("config", [AugmentConfig(enabled=False), AugmentConfig(p=0.0)])
def test_no_augmentation_when_disabled(config: AugmentConfig) -> None:
    x = _images(3, 3, 36)
    transform = BatchTransform(config, 28, MINMAX)
    assert torch.equal(transform(x, train=True), transform(x, train=False))


def test_forward_changes_nothing_on_the_module() -> None:
    transform = BatchTransform(AugmentConfig(hflip=True), 28, MINMAX)
    before = dict(vars(transform))
    buffers = {k: v.clone() for k, v in transform.named_buffers()}
    transform(_images(4, 1, 36), train=True)
    assert dict(vars(transform)) == before
    for name, value in transform.named_buffers():
        assert torch.equal(value, buffers[name])


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("degrees", 90),
        ("degrees", -1.0),
        ("scale", (1.2, 0.9)),
        ("scale", (0.9,)),
        ("translate", 0.5),
        ("brightness", -0.1),
        ("contrast", 1.0),
        ("crop_scale", (0.3, 1.0)),
        ("crop_scale", (0.9, 1.1)),
        ("p", 1.5),
        ("hflip", "yes"),
        ("enabled", 1),
    ],
)
def test_invalid_config_names_the_field(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=rf"^{field} must be"):
        AugmentConfig(**{field: value})  # type: ignore[arg-type]


def test_config_accepts_lists_from_yaml() -> None:
    config = AugmentConfig(scale=[0.8, 1.2], crop_scale=[0.9, 1])  # type: ignore[arg-type]
    assert config.scale == (0.8, 1.2) and config.crop_scale == (0.9, 1.0)


def test_fit_normalization_matches_numpy() -> None:
    rng = np.random.default_rng(1)
    images = rng.integers(0, 65536, (10, 3, 8, 8), dtype=np.uint16)
    stats = fit_normalization("meanstd", images)
    scaled = images / 65535.0
    assert stats.mean is not None and stats.std is not None
    np.testing.assert_allclose(stats.mean, scaled.mean(axis=(0, 2, 3)), rtol=1e-9)
    np.testing.assert_allclose(stats.std, scaled.std(axis=(0, 2, 3)), rtol=1e-9)
    streamed = fit_normalization("meanstd", [torch.from_numpy(images[:3]), images[3:]])
    assert streamed.mean is not None and streamed.std is not None
    np.testing.assert_allclose(streamed.mean, stats.mean, rtol=1e-12)
    np.testing.assert_allclose(streamed.std, stats.std, rtol=1e-12)
    assert fit_normalization("minmax", images) == NormStats(Normalization.MINMAX)


def test_meanstd_standardises_with_the_stats() -> None:
    x = _images(4, 1, 28)
    stats = fit_normalization(Normalization.MEANSTD, x.numpy())
    out = BatchTransform(AugmentConfig(), 28, stats)(x, train=False)
    expected = (x.float() / 255 - stats.mean[0]) / stats.std[0]  # type: ignore[index]
    torch.testing.assert_close(out, expected)
    with pytest.raises(ValueError, match="1 channel"):
        BatchTransform(AugmentConfig(), 28, stats)(_images(2, 3, 28), train=False)


def test_norm_stats_validation_and_round_trip() -> None:
    stats = NormStats(Normalization.MEANSTD, (0.5,), (0.25,))
    for record in (stats.to_dict(), dataclasses.asdict(stats)):
        assert NormStats.from_dict(json.loads(json.dumps(record))) == stats
    assert NormStats.from_dict(MINMAX.to_dict()) == MINMAX
    with pytest.raises(ValueError, match="got keys"):
        NormStats.from_dict({"kind": "minmax", "scale": 2})
    with pytest.raises(ValueError, match="did you mean 'minmax'"):
        NormStats("minmx")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="needs mean and std"):
        NormStats(Normalization.MEANSTD)
    with pytest.raises(ValueError, match="std positive"):
        NormStats(Normalization.MEANSTD, (0.5,), (0.0,))
    with pytest.raises(ValueError, match="zero std"):
        fit_normalization("meanstd", np.full((2, 1, 4, 4), 7, dtype=np.uint8))


@pytest.mark.parametrize("dtype", [torch.uint16, torch.int32])
def test_sixteen_bit_input_is_scaled_by_65535(dtype: torch.dtype) -> None:
    values = torch.tensor([0, 32768, 65535], dtype=torch.int32)
    x = values.repeat(12 * 12 // 3).view(1, 1, 12, 12).to(dtype)
    out = BatchTransform(AugmentConfig(), 12, FIXED)(x, train=False)
    torch.testing.assert_close(out.flatten()[:3], values.float() / 65535)
    eight = _images(2, 1, 36)
    as16 = (eight.to(torch.int32) * 257).to(dtype)
    transform = BatchTransform(AugmentConfig(), 28, FIXED)
    torch.testing.assert_close(transform(as16, train=False), transform(eight, train=False))


def test_rejects_bad_inputs() -> None:
    transform = BatchTransform(AugmentConfig(), 28, MINMAX)
    with pytest.raises(ValueError, match="already-scaled floats"):
        transform(torch.rand(2, 1, 36, 36), train=False)
    with pytest.raises(ValueError, match=r"torch.Size\(\[2, 2, 36, 36\]\)"):
        transform(torch.zeros(2, 2, 36, 36, dtype=torch.uint8), train=False)
    with pytest.raises(ValueError, match="size must be"):
        BatchTransform(AugmentConfig(), 4, MINMAX)


@pytest.mark.parametrize("side", [20, 28, 36, 60])
def test_identity_augmentation_equals_eval_at_every_presize(side: int) -> None:
    """A warp whose every sample draws the identity (p ~ 0: no sample is augmented, but the warp
    still runs) gives the evaluation output, whether the presize is below, at or above the
    output size: no border fringe, no shift."""
    still = AugmentConfig(p=1e-9)
    transform = BatchTransform(still, 28, FIXED)
    images = torch.full((2, 1, side, side), 200, dtype=torch.uint8)
    images[:, :, : side // 2] = 60  # an edge, so that a shift would show
    train = transform(images, train=True, generator=torch.Generator().manual_seed(0))
    evaluated = transform(images, train=False)
    # 28 < side <= 42 is one bilinear warp, eval an antialiased resize: they differ at edges
    tolerance = 0.06 if 28 < side <= 42 else 1e-5
    torch.testing.assert_close(train, evaluated, atol=tolerance, rtol=0)
    assert train[:, :, :, 0].min() > 0.2  # no dark fringe at the left border
