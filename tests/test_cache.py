from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import write_tree
from medbalance.data import cache as cache_module
from medbalance.data.cache import (
    PresizeCache,
    PresizeSettings,
    UnreadableImagesError,
    presize,
    presize_array,
)
from medbalance.data.catalog import load_catalog


def test_presize_pads_without_cropping() -> None:
    image = np.full((20, 40), 200, np.uint8)
    out = presize_array(image, PresizeSettings(size=10))
    assert out.shape == (1, 10, 10)
    assert (out[0, :2] == 0).all() and (out[0, -3:] == 0).all()  # letterbox rows
    assert (out[0, 3:7] == 200).all()  # the whole width kept
    squish = presize_array(image, PresizeSettings(size=10, fit="squish"))
    assert (squish == 200).all()


def test_second_load_skips_decoding(
    tiny_tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    catalog = load_catalog(tiny_tree)
    settings = PresizeSettings(size=24)
    first = PresizeCache(settings, tmp_path / "c")
    images, failures = first.ensure(catalog, workers=1)
    assert failures == [] and first.decoded == len(catalog)
    assert images.take([0, 1]).shape == (2, 1, 24, 24)
    first.close()

    def boom(*args: object) -> None:
        raise AssertionError("decoded again")

    monkeypatch.setattr(cache_module, "_decode_presized", boom)
    second = PresizeCache(settings, tmp_path / "c")
    again, _ = second.ensure(catalog, workers=1)
    assert second.decoded == 0
    np.testing.assert_array_equal(again.take(range(len(catalog))), images.take(range(len(catalog))))


def test_changed_and_added_files_are_recached(tmp_path: Path) -> None:
    root = write_tree(tmp_path / "d", {"a": 3, "b": 3})
    settings = PresizeSettings(size=16)
    cache = PresizeCache(settings, tmp_path / "c")
    cache.ensure(load_catalog(root), workers=1)
    target = root / "a" / "img_0.png"
    Image.new("L", (32, 32), 255).save(target)
    os.utime(target, ns=(1, 1))
    Image.new("L", (32, 32), 9).save(root / "b" / "new.png")
    cache.decoded = 0
    images, _ = cache.ensure(load_catalog(root), workers=1)
    assert cache.decoded == 2
    assert images.take([0]).min() == 255


def test_colour_items_make_three_channels(tmp_path: Path) -> None:
    root = write_tree(tmp_path / "d", {"a": 2, "b": 2})
    rgb = np.zeros((32, 32, 3), np.uint8)
    rgb[..., 0] = 255
    Image.fromarray(rgb).save(root / "a" / "red.png")
    images, _, _ = presize(load_catalog(root), 16, cache_root=tmp_path / "c", workers=1)
    assert images.channels == 3
    batch = images.take(range(5))
    assert batch.shape == (5, 3, 16, 16)
    gray = batch[1]
    assert (gray[0] == gray[1]).all() and (gray[1] == gray[2]).all()


def test_unreadable_listed_every_file_or_skipped(tmp_path: Path) -> None:
    root = write_tree(tmp_path / "d", {"a": 3, "b": 3})
    (root / "a" / "bad1.png").write_text("not a png")
    (root / "b" / "bad2.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    catalog = load_catalog(root)
    with pytest.raises(
        UnreadableImagesError,
        match=r"2 image\(s\)(.|\n)*bad1.png(.|\n)*bad2.jpg(.|\n)*--skip-unreadable",
    ):
        presize(catalog, 16, cache_root=tmp_path / "c", workers=1)
    images, kept, failures = presize(
        catalog, 16, cache_root=tmp_path / "c", workers=1, skip_unreadable=True
    )
    assert sorted(Path(p).name for p, _ in failures) == ["bad1.png", "bad2.jpg"]
    assert len(kept) == len(images) == 6


def test_parallel_build_matches_serial(tiny_tree: Path, tmp_path: Path) -> None:
    catalog = load_catalog(tiny_tree)
    serial, _, _ = presize(catalog, 20, cache_root=tmp_path / "s", workers=1)
    parallel, _, _ = presize(catalog, 20, cache_root=tmp_path / "p", workers=2)
    np.testing.assert_array_equal(
        serial.take(range(len(catalog))), parallel.take(range(len(catalog)))
    )


def test_npz_presize_in_memory(tiny_npz: Path) -> None:
    catalog = load_catalog(tiny_npz)
    native, _, _ = presize(catalog, 28)
    assert native.take([0]).shape == (1, 1, 28, 28)
    np.testing.assert_array_equal(native.take([3])[0, 0], catalog.images[3])  # type: ignore[index]
    larger, _, _ = presize(catalog, 36)
    assert larger.take([0, 1]).shape == (2, 1, 36, 36)


def test_presize_command_fills_the_cache_that_train_reads(tiny_tree: Path, tiny_npz: Path) -> None:
    from typer.testing import CliRunner

    from medbalance.cli.app import app

    runner = CliRunner()
    first = runner.invoke(app, ["presize", str(tiny_tree), "--size", "32", "--workers", "1"])
    assert first.exit_code == 0, first.output
    assert "94 images presized to 40 px" in first.output and "(94 decoded now" in first.output
    again = runner.invoke(app, ["presize", str(tiny_tree), "--size", "32"])
    assert "(0 decoded now" in again.output
    cache = PresizeCache(PresizeSettings(size=40))  # what train --size 32 opens
    try:
        cache.ensure(load_catalog(tiny_tree))
        assert cache.decoded == 0
    finally:
        cache.close()
    arrays = runner.invoke(app, ["presize", str(tiny_npz), "--size", "28"])
    assert arrays.exit_code == 0 and "nothing to cache" in arrays.output
    missing = runner.invoke(app, ["presize", str(tiny_tree / "nope"), "--size", "32"])
    assert missing.exit_code == 2 and "no such file or folder" in missing.output


def test_index_lookups_in_chunks_match_one_lookup(
    tiny_tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    catalog = load_catalog(tiny_tree)
    whole, _, _ = presize(catalog, 24, cache_root=tmp_path / "one")
    monkeypatch.setattr(cache_module, "_LOOKUP_CHUNK", 7)  # 94 files: 14 chunks, a partial one
    cache = PresizeCache(PresizeSettings(size=24), tmp_path / "chunked")
    try:
        first, _ = cache.ensure(catalog, workers=1)
        decoded = cache.decoded
        again, _ = cache.ensure(catalog, workers=1)
        assert decoded == len(catalog) and cache.decoded == decoded  # nothing decoded twice
    finally:
        cache.close()
    all_items = np.arange(len(catalog))
    assert np.array_equal(first.take(all_items), whole.take(all_items))
    assert np.array_equal(again.take(all_items), whole.take(all_items))


def _built(tiny_tree: Path, root: Path) -> tuple[np.ndarray, Path]:
    catalog = load_catalog(str(tiny_tree))
    images, _, _ = presize(catalog, 20, cache_root=root, workers=1)
    return images.take(np.arange(len(catalog))), root / "v1-20px-pad"


@pytest.mark.parametrize("damage", ["truncate", "delete", "garbage"])
def test_a_damaged_shard_is_rebuilt_with_a_warning(
    tiny_tree: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture, damage: str
) -> None:
    reference, folder = _built(tiny_tree, tmp_path / "c")
    (shard,) = folder.glob("*.npy")
    if damage == "truncate":
        shard.write_bytes(shard.read_bytes()[:1000])
    elif damage == "delete":
        shard.unlink()
    else:
        shard.write_bytes(b"not numpy at all")
    again, _ = _built(tiny_tree, tmp_path / "c")
    np.testing.assert_array_equal(again, reference)
    assert "damaged or missing shard(s) dropped" in caplog.text


def test_a_damaged_index_is_set_aside_and_rebuilt(
    tiny_tree: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    reference, folder = _built(tiny_tree, tmp_path / "c")
    (folder / "index.sqlite").write_bytes(b"this is not sqlite" * 100)
    again, _ = _built(tiny_tree, tmp_path / "c")
    np.testing.assert_array_equal(again, reference)
    assert "index" in caplog.text and "was damaged" in caplog.text
    assert list(folder.glob("index.sqlite.damaged-*"))


def test_stale_temporaries_and_unnamed_shards_are_collected(
    tiny_tree: Path, tmp_path: Path
) -> None:
    import os
    import stat
    import time

    _, folder = _built(tiny_tree, tmp_path / "c")
    (shard,) = folder.glob("*.npy")
    assert stat.S_IMODE(shard.stat().st_mode) == 0o666 & ~_umask()  # like every other output
    old = time.time() - 7200
    orphans = [folder / ".1c-uint8-x.npy.abc.part", folder / "1c-uint8-duplicate.npy"]
    fresh = folder / ".1c-uint8-y.npy.def.part"  # a build running now
    for path in [*orphans, fresh]:
        path.write_bytes(b"x")
    for path in orphans:
        os.utime(path, (old, old))
    _built(tiny_tree, tmp_path / "c")
    assert not any(p.exists() for p in orphans) and fresh.exists() and shard.exists()


def _umask() -> int:
    import os

    mask = os.umask(0)
    os.umask(mask)
    return mask
