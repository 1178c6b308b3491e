"""DDP on CPU with the gloo backend and two processes, the way torchrun runs medbalance."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from conftest import write_npz
from medbalance.core.distributed import DistInfo, gather_rows, shard
from medbalance.training.config import TrainConfig

pytestmark = pytest.mark.slow


def _free_ports(n: int) -> list[int]:
    """``n`` distinct free ports (all held open while choosing, so none repeats)."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in socks]
    finally:
        for sock in socks:
            sock.close()


def _config(data: Path, out: Path) -> TrainConfig:
    return TrainConfig(
        data=str(data),
        out=str(out),
        epochs=3,
        batch_size=16,
        lr=2e-3,
        device="cpu",
        seed=3,
        bootstrap=20,
        sampler="oversample",
    )


def _worker(
    rank: int, world: int, ports: tuple[int, int], data: str, out: str, resume: bool, cut: int
) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(ports[0]),
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(world),
    )
    os.environ["MEDBALANCE_CACHE"] = str(Path(out).parent / "cache")
    torch.set_num_threads(1)
    from medbalance.workflows.training import train_and_evaluate as fit

    result = fit(
        _config(Path(data), Path(out)), resume=resume, stop_after_epoch=cut if cut >= 0 else None
    )
    record = {"best_epoch": result.best_epoch, "history_len": len(result.history)}
    Path(out, f"rank{rank}.json").write_text(json.dumps(record))
    if cut < 0:  # score val with the best checkpoint, sharded over both ranks, then gathered
        import torch.distributed as dist

        from medbalance.core.distributed import setup, teardown
        from medbalance.data.prepared import prepare_data
        from medbalance.evaluation.inference import load_trained
        from medbalance.evaluation.scoring import score_split

        # a second group on a fresh port: on the first one, a fast rank could reach the old
        # store before the slow rank's teardown closed it, and wait there forever
        os.environ["MASTER_PORT"] = str(ports[1])
        info, device = setup(torch.device("cpu"))
        trained = load_trained(Path(out) / "best.safetensors")
        prepared = prepare_data(data, presize_to=trained.presize, seed=3)
        probs = score_split(
            trained.model, prepared, "val", trained.transform, device, dist_info=info, batch_size=7
        ).probs
        if dist.get_rank() == 0:
            np.save(Path(out) / "gathered_val.npy", probs)
        teardown(info)


def _spawn(data: Path, out: Path, *, resume: bool = False, cut: int = -1) -> None:
    ports = tuple(_free_ports(2))
    mp.spawn(_worker, args=(2, ports, str(data), str(out), resume, cut), nprocs=2)


def test_shard_and_gather_cover_each_item_once() -> None:
    idx = np.arange(11)
    parts = [shard(idx, DistInfo(rank=r, world_size=3)) for r in range(3)]
    assert sorted(np.concatenate(parts).tolist()) == idx.tolist()
    rebuilt = np.empty(11, dtype=int)
    for r, part in enumerate(parts):
        rebuilt[r::3] = part
    assert (rebuilt == idx).all()
    assert gather_rows(idx, DistInfo()) is idx


def test_ddp_train_metrics_equal_single_process_and_resume(tmp_path: Path) -> None:
    data = write_npz(tmp_path / "d.npz", {"train": (60, 20), "val": (20, 20), "test": (16, 16)})
    run = tmp_path / "ddp"
    _spawn(data, run, cut=0)  # killed after the first epoch
    assert (run / "last.pt").is_file() and not (run / "metrics.json").exists()
    _spawn(data, run, resume=True)
    ranks = [json.loads((run / f"rank{r}.json").read_text()) for r in range(2)]
    assert ranks[0] == ranks[1]  # every rank took the same decisions
    assert (run / "metrics.json").is_file() and (run / "report.html").is_file()
    history = (run / "history.csv").read_text().splitlines()
    assert len(history) == 4  # header + 3 epochs, none lost or repeated by the resume

    # predictions gathered under DDP equal a single-process pass over the same checkpoint:
    # same items, same order, none dropped or counted twice
    from medbalance.data.prepared import prepare_data
    from medbalance.evaluation.inference import load_trained
    from medbalance.evaluation.scoring import score_split

    os.environ["MEDBALANCE_CACHE"] = str(tmp_path / "cache")
    trained = load_trained(run / "best.safetensors")
    prepared = prepare_data(str(data), presize_to=trained.presize, seed=3)
    single = score_split(
        trained.model, prepared, "val", trained.transform, torch.device("cpu")
    ).probs
    gathered = np.load(run / "gathered_val.npy")
    assert gathered.shape == single.shape == (40, 2)
    np.testing.assert_allclose(gathered, single, atol=1e-5)
