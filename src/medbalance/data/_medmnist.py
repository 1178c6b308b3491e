"""The MedMNIST v2 catalogue: names, class names, split sizes and official MD5 checksums.

Facts copied from ``medmnist/info.py`` (medmnist 3.0.2, 2D data sets only) so that medbalance
can resolve, download and verify a data set by name without depending on that package.
"""

from __future__ import annotations

import difflib
import hashlib
import os
import shutil
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "MEDMNIST",
    "MedMNISTInfo",
    "medmnist_info",
    "resolve_medmnist",
]

ZENODO_RECORD = "https://zenodo.org/records/10519652/files"
SIZES = (28, 64, 128, 224)


@dataclass(frozen=True)
class MedMNISTInfo:
    """One MedMNIST data set as the official catalogue describes it."""

    task: str
    n_channels: int
    labels: tuple[str, ...]
    n_samples: dict[str, int]
    md5: dict[int, str]
    license: str

    @property
    def multi_label(self) -> bool:
        return self.task.startswith("multi-label")


_Info = MedMNISTInfo

MEDMNIST: dict[str, MedMNISTInfo] = {
    "pathmnist": _Info(
        task="multi-class",
        n_channels=3,
        labels=(
            "adipose",
            "background",
            "debris",
            "lymphocytes",
            "mucus",
            "smooth muscle",
            "normal colon mucosa",
            "cancer-associated stroma",
            "colorectal adenocarcinoma epithelium",
        ),
        n_samples={"train": 89996, "val": 10004, "test": 7180},
        md5={
            28: "a8b06965200029087d5bd730944a56c1",
            64: "55aa9c1e0525abe5a6b9d8343a507616",
            128: "ac42d08fb904d92c244187169d1fd1d9",
            224: "2c51a510bcdc9cf8ddb2af93af1eadec",
        },
        license="CC BY 4.0",
    ),
    "chestmnist": _Info(
        task="multi-label, binary-class",
        n_channels=1,
        labels=(
            "atelectasis",
            "cardiomegaly",
            "effusion",
            "infiltration",
            "mass",
            "nodule",
            "pneumonia",
            "pneumothorax",
            "consolidation",
            "edema",
            "emphysema",
            "fibrosis",
            "pleural",
            "hernia",
        ),
        n_samples={"train": 78468, "val": 11219, "test": 22433},
        md5={
            28: "02c8a6516a18b556561a56cbdd36c4a8",
            64: "9de6cd0b934ebb5b7426cfba5efbae16",
            128: "db107e5590b27930b62dbaf558aebee3",
            224: "45bd33e6f06c3e8cdb481c74a89152aa",
        },
        license="CC BY 4.0",
    ),
    "dermamnist": _Info(
        task="multi-class",
        n_channels=3,
        labels=(
            "actinic keratoses and intraepithelial carcinoma",
            "basal cell carcinoma",
            "benign keratosis-like lesions",
            "dermatofibroma",
            "melanoma",
            "melanocytic nevi",
            "vascular lesions",
        ),
        n_samples={"train": 7007, "val": 1003, "test": 2005},
        md5={
            28: "0744692d530f8e62ec473284d019b0c7",
            64: "b70a2f5635c6199aeaa28c31d7202e1f",
            128: "2defd784463fa5243564e855ed717de1",
            224: "8974907d8e169bef5f5b96bc506ae45d",
        },
        license="CC BY-NC 4.0",
    ),
    "octmnist": _Info(
        task="multi-class",
        n_channels=1,
        labels=("choroidal neovascularization", "diabetic macular edema", "drusen", "normal"),
        n_samples={"train": 97477, "val": 10832, "test": 1000},
        md5={
            28: "c68d92d5b585d8d81f7112f81e2d0842",
            64: "e229e9440236b774d9f0dfef9d07bdaf",
            128: "0a97e76651ace45c5d943ee3f65b63ae",
            224: "abc493b6d529d5de7569faaef2773ba3",
        },
        license="CC BY 4.0",
    ),
    "pneumoniamnist": _Info(
        task="binary-class",
        n_channels=1,
        labels=("normal", "pneumonia"),
        n_samples={"train": 4708, "val": 524, "test": 624},
        md5={
            28: "28209eda62fecd6e6a2d98b1501bb15f",
            64: "8f4eceb4ccffa70c672198ea285246c6",
            128: "05b46931834c231683c68f40c47b2971",
            224: "d6a3c71de1b945ea11211b03746c1fe1",
        },
        license="CC BY 4.0",
    ),
    "retinamnist": _Info(
        task="ordinal-regression",
        n_channels=3,
        labels=("0", "1", "2", "3", "4"),
        n_samples={"train": 1080, "val": 120, "test": 400},
        md5={
            28: "bd4c0672f1bba3e3a89f0e4e876791e4",
            64: "afda852cc34dcda56f86ad2b2457dbcc",
            128: "e48e916a24454daf90583d4e6efb1a18",
            224: "eae7e3b6f3fcbda4ae613ebdcbe35348",
        },
        license="CC BY 4.0",
    ),
    "breastmnist": _Info(
        task="binary-class",
        n_channels=1,
        labels=("malignant", "normal, benign"),
        n_samples={"train": 546, "val": 78, "test": 156},
        md5={
            28: "750601b1f35ba3300ea97c75c52ff8f6",
            64: "742edef2a1fd1524b2efff4bd7ba9364",
            128: "363e4b3f8d712e9b5de15470a2aaadf1",
            224: "b56378a6eefa9fed602bb16d192d4c8b",
        },
        license="CC BY 4.0",
    ),
    "bloodmnist": _Info(
        task="multi-class",
        n_channels=3,
        labels=(
            "basophil",
            "eosinophil",
            "erythroblast",
            "immature granulocytes(myelocytes, metamyelocytes and promyelocytes)",
            "lymphocyte",
            "monocyte",
            "neutrophil",
            "platelet",
        ),
        n_samples={"train": 11959, "val": 1712, "test": 3421},
        md5={
            28: "7053d0359d879ad8a5505303e11de1dc",
            64: "2b94928a2ae4916078ca51e05b6b800b",
            128: "adace1e0ed228fccda1f39692059dd4c",
            224: "b718ff6835fcbdb22ba9eacccd7b2601",
        },
        license="CC BY 4.0",
    ),
    "tissuemnist": _Info(
        task="multi-class",
        n_channels=1,
        labels=(
            "Collecting Duct, Connecting Tubule",
            "Distal Convoluted Tubule",
            "Glomerular endothelial cells",
            "Interstitial endothelial cells",
            "Leukocytes",
            "Podocytes",
            "Proximal Tubule Segments",
            "Thick Ascending Limb",
        ),
        n_samples={"train": 165466, "val": 23640, "test": 47280},
        md5={
            28: "ebe78ee8b05294063de985d821c1c34b",
            64: "123ece2eba09d0aa5d698fda57103344",
            128: "61b955355d7425a89687b06cca3ce0c2",
            224: "b077128c4a949f0a4eb01517f9037b9c",
        },
        license="CC BY 4.0",
    ),
    "organamnist": _Info(
        task="multi-class",
        n_channels=1,
        labels=(
            "bladder",
            "femur-left",
            "femur-right",
            "heart",
            "kidney-left",
            "kidney-right",
            "liver",
            "lung-left",
            "lung-right",
            "pancreas",
            "spleen",
        ),
        n_samples={"train": 34561, "val": 6491, "test": 17778},
        md5={
            28: "68e3f8846a6bd62f0c9bf841c0d9eacc",
            64: "2dcccc29b88e6da5a01161ef20cda288",
            128: "eeae80d0a227a8d099027e1b3cfd3b60",
            224: "50747347e05c87dd3aaf92c49f9f3170",
        },
        license="CC BY 4.0",
    ),
    "organcmnist": _Info(
        task="multi-class",
        n_channels=1,
        labels=(
            "bladder",
            "femur-left",
            "femur-right",
            "heart",
            "kidney-left",
            "kidney-right",
            "liver",
            "lung-left",
            "lung-right",
            "pancreas",
            "spleen",
        ),
        n_samples={"train": 12975, "val": 2392, "test": 8216},
        md5={
            28: "b9ceb9546e10131b32923c5bbeaea2b1",
            64: "3ce34a8724ea6f548e6db4744d03b6a9",
            128: "773c1f009daa3fe5d9a2a201b2a7ed94",
            224: "050f5e875dc056f6768abf94ec9995d1",
        },
        license="CC BY 4.0",
    ),
    "organsmnist": _Info(
        task="multi-class",
        n_channels=1,
        labels=(
            "bladder",
            "femur-left",
            "femur-right",
            "heart",
            "kidney-left",
            "kidney-right",
            "liver",
            "lung-left",
            "lung-right",
            "pancreas",
            "spleen",
        ),
        n_samples={"train": 13932, "val": 2452, "test": 8827},
        md5={
            28: "9ab87b696fb54e2a387ebe992d6ed5f1",
            64: "53a6d115339d874c25e309a994ff46d3",
            128: "ded0c5fa01a95dc4978b956f613e9b8e",
            224: "b354719e553fbbb2513d5533f52a4cb1",
        },
        license="CC BY 4.0",
    ),
}


def _file_name(name: str, size: int) -> str:
    return f"{name}.npz" if size == 28 else f"{name}_{size}.npz"


def medmnist_info(name: str) -> MedMNISTInfo:
    """Return the catalogue entry for a data set name, or raise with the nearest names."""
    key = name.lower()
    if key in MEDMNIST:
        return MEDMNIST[key]
    near = difflib.get_close_matches(key, MEDMNIST, n=3, cutoff=0.6)
    hint = f"; did you mean {' or '.join(repr(n) for n in near)}?" if near else ""
    raise ValueError(
        f"{name!r} is neither an existing path nor a MedMNIST data set name{hint} "
        f"Known names: {', '.join(sorted(MEDMNIST))}."
    )


def _search_dirs() -> list[Path]:
    dirs = []
    if env := os.environ.get("MEDBALANCE_DATA"):
        dirs.append(Path(env).expanduser())
    dirs.append(cache_dir() / "medmnist")
    return dirs


def cache_dir() -> Path:
    """The user cache folder (``$MEDBALANCE_CACHE``, else ``$XDG_CACHE_HOME/medbalance``)."""
    if env := os.environ.get("MEDBALANCE_CACHE"):
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "medbalance"


def _md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def resolve_medmnist(name: str, *, size: int = 28, download: bool = True) -> Path:
    """Find ``<name>.npz`` locally, or download and verify it.

    Looks in ``$MEDBALANCE_DATA``, then in the user cache; otherwise downloads from the official
    Zenodo record into the cache and checks the official MD5. Offline, fails fast with a message
    saying where to put the file.
    """
    info = medmnist_info(name)
    key = name.lower()
    if info.multi_label:
        raise ValueError(
            f"{key} is multi-label ({len(info.labels)} findings per image); medbalance handles "
            "binary and multi-class data sets only for now. Use a single-label MedMNIST set such "
            "as pneumoniamnist or breastmnist."
        )
    if size not in info.md5:
        raise ValueError(f"{key} comes in sizes {sorted(info.md5)}, not {size}.")
    file_name = _file_name(key, size)
    for folder in _search_dirs():
        if (folder / file_name).is_file():
            return folder / file_name
    target = cache_dir() / "medmnist" / file_name
    if not download:
        raise FileNotFoundError(_missing_message(file_name))
    _download(f"{ZENODO_RECORD}/{file_name}?download=1", target, info.md5[size], file_name)
    return target


def _missing_message(file_name: str) -> str:
    places = " or ".join(str(d) for d in _search_dirs())
    return (
        f"{file_name} was not found in {places}, and it could not be downloaded. Put the file "
        f"in one of those folders (or set MEDBALANCE_DATA to the folder that holds it), or pass "
        f"the path to the .npz file itself."
    )


def _download(url: str, target: Path, md5: str, file_name: str) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=target.parent, suffix=".part", delete=False) as tmp:
        part = Path(tmp.name)
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                shutil.copyfileobj(response, tmp)
        except (urllib.error.URLError, TimeoutError, OSError) as error:
            part.unlink(missing_ok=True)
            raise FileNotFoundError(f"{_missing_message(file_name)} ({error})") from error
    if (got := _md5(part)) != md5:
        part.unlink(missing_ok=True)
        raise ValueError(
            f"downloaded {file_name} has MD5 {got}, the official one is {md5}; the download "
            "was discarded. Try again, or fetch the file by hand."
        )
    part.replace(target)
