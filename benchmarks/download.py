"""Everything the suite fetches from the network, and only with ``--download``.

Off by default: without the flag nothing here runs, and missing data or weights are an error
that names the flag. With it, the driver (never a worker) calls :func:`fetch` once, after
every input check and before any cell runs; what is already on disk is not fetched again.

- ``cifar100lt``: CIFAR-100, python version, through torchvision's own downloader
  (``torchvision.datasets.CIFAR100(download=True)``: its URL and md5 checksums), into
  ``<data_root>/cifar-100-python/``.
- ``voc``: PASCAL VOC 2007 trainval and test through torchvision's
  (``VOCDetection(year="2007", image_set=..., download=True)``: its URLs and md5s), into
  ``<data_root>/VOCdevkit/VOC2007/``.
- ``coco``: MS-COCO 2014 from the official archive addresses (:data:`COCO_ARCHIVES`: the
  annotations, the train and the val images), each archive's size and md5 checked. A
  download that stops keeps its ``.part`` file and the next run continues it (HTTP Range).
- ``--pretrained timm:<model>.<tag>``: timm's hub loading (``timm.create_model(name,
  pretrained=True)``); the backbone's state dict is saved to
  :func:`benchmarks.backbones.weights_file`, where the cells read it.

Archives are downloaded to and extracted in a staging folder,
``<data_root>/.download/<dataset>/``; the extracted folders are then renamed into place, so
that the data layout never holds a half-extracted archive. Archives are deleted once
extracted. Every failure is one :class:`DownloadError` line (exit status 2, as every input
error; nothing has run); a corrupt archive is deleted, a partial one kept to resume.
"""
from __future__ import annotations

import contextlib
import hashlib
import http.client
import os
import shutil
import sys
import tempfile
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Optional
from urllib.parse import urlparse

from benchmarks import backbones, streams

STAGING = ".download"  # under the data root
TIMEOUT_S = 60.0  # per socket operation
CHUNK = 1 << 20


class DownloadError(Exception):
    """A download that failed (network, size, checksum, archive): one line, exit status 2."""


@dataclass(frozen=True)
class Archive:
    """An archive at ``url`` of ``size`` bytes and md5 ``md5``; ``parts`` are the files or
    folders it holds, relative to the data root (what the layout needs of it)."""

    url: str
    size: int
    md5: str
    parts: tuple[str, ...]


# The official addresses of cocodataset.org's download page. Sizes and md5 checksums (the
# S3 objects' ETags) as published along the archives and used by other loaders.
COCO_ARCHIVES = (
    Archive("http://images.cocodataset.org/annotations/annotations_trainval2014.zip",
            252_872_794, "0a379cfc70b0e71301e0f377548639bd",
            ("annotations/instances_train2014.json", "annotations/instances_val2014.json")),
    Archive("http://images.cocodataset.org/zips/train2014.zip",
            13_510_573_713, "0da8c0bd3d6becc4dcb32757491aca88", ("train2014",)),
    Archive("http://images.cocodataset.org/zips/val2014.zip",
            6_645_013_297, "a3d79f5ed8d289b7a7554ce06a5782b3", ("val2014",)),
)


def fetch(stream_names: Iterable[str], data_root: Optional[str], pretrained: Optional[str],
          quiet: bool = False) -> None:
    """Fetch what the streams and ``pretrained`` need and is not on disk yet: the named
    weights are checked against timm first, then the datasets and weights are fetched."""
    say = (lambda line: None) if quiet else (lambda line: print(line, file=sys.stderr))
    named = pretrained if pretrained and backbones.is_named(pretrained) else None
    if named and not backbones.weights_file(named).is_file():
        _check_timm_name(named)
    wanted = {dataset.name: dataset for dataset in (streams.parse(name)[0]
                                                    for name in stream_names)}
    for dataset in wanted.values():
        if dataset.layout is None or _present(dataset, data_root):
            continue
        root = Path(data_root).expanduser()
        say(f"downloading {dataset.name} to {root}")
        FETCHERS[dataset.name](root, root / STAGING / dataset.name, say, quiet)
        with contextlib.suppress(OSError):
            (root / STAGING).rmdir()  # when empty
        dataset.locate(data_root)  # as a cell will
    if named and not backbones.weights_file(named).is_file():
        say(f"downloading {named} through timm to {backbones.weights_file(named)}")
        fetch_weights(named, quiet)


def _present(dataset: streams.Dataset, data_root: Optional[str]) -> bool:
    try:
        dataset.locate(data_root)
    except streams.StreamError:
        return False
    return True


# ---------------------------------------------------------------- torchvision's datasets

def _cifar100(staging: Path) -> None:
    from torchvision.datasets import CIFAR100

    CIFAR100(str(staging), train=True, download=True)


def _voc2007(staging: Path) -> None:
    from torchvision.datasets import VOCDetection

    for image_set in ("trainval", "test"):
        VOCDetection(str(staging), year="2007", image_set=image_set, download=True)


def _through_torchvision(get: Callable[[Path], None], folder: str):
    """A fetcher that runs ``get(staging)`` (a torchvision dataset's downloader, which
    downloads, checks and extracts into ``staging``) and renames ``staging/folder`` to
    ``root/folder``; on failure, what was extracted is removed (verified archives stay for
    the next run: torchvision checks them again before using them)."""
    def fetcher(root: Path, staging: Path, say, quiet: bool) -> None:
        staging.mkdir(parents=True, exist_ok=True)
        try:
            with _quiet(quiet):
                get(staging)
            _install(staging, root, [folder])
        except Exception as exc:  # network, checksum, archive, file system: all one line
            shutil.rmtree(staging / folder.split("/")[0], ignore_errors=True)
            raise DownloadError(f"{folder}: {_reason(exc)}") from None
        shutil.rmtree(staging, ignore_errors=True)
    return fetcher


# ---------------------------------------------------------------- COCO

def fetch_coco(root: Path, staging: Path, say, quiet: bool) -> None:
    """Download (into ``staging``), verify and extract each of :data:`COCO_ARCHIVES` that
    holds a part missing from ``root``."""
    for archive in COCO_ARCHIVES:
        missing = [part for part in archive.parts if not (root / part).exists()]
        if not missing:
            continue
        file = staging / Path(urlparse(archive.url).path).name
        download(archive, file, say, quiet)
        say(f"extracting {file.name}")
        extract(file, root, missing)
        file.unlink()
    shutil.rmtree(staging, ignore_errors=True)


def download(archive: Archive, file: Path, say, quiet: bool) -> None:
    """``archive`` to ``file``, resumable: the bytes go to ``file.part`` (continued with an
    HTTP Range request when it exists), which becomes ``file`` once its size and md5 are
    right. A short download keeps the part (run again to resume); a wrong size or checksum
    deletes it."""
    if file.exists():  # verified by an earlier run that stopped before extracting it
        return
    file.parent.mkdir(parents=True, exist_ok=True)
    part = file.with_name(file.name + ".part")
    have = part.stat().st_size if part.exists() else 0
    if have > archive.size:
        part.unlink()
        have = 0
    if have < archive.size:
        say(f"downloading {archive.url} ({archive.size / 2 ** 20:,.0f} MiB"
            + (f", resuming at {have / 2 ** 20:,.0f} MiB)" if have else ")"))
        headers = {"User-Agent": "imbacil-bench", **({"Range": f"bytes={have}-"} if have else {})}
        try:
            with urllib.request.urlopen(urllib.request.Request(archive.url, headers=headers),
                                        timeout=TIMEOUT_S) as response:
                if have and response.status != 206:  # the server sent the whole file
                    have = 0
                with open(part, "ab" if have else "wb") as out, _bar(archive.size, have,
                                                                     file.name, quiet) as bar:
                    while chunk := response.read(CHUNK):
                        out.write(chunk)
                        bar.update(len(chunk))
        except (OSError, http.client.HTTPException) as exc:  # URLError is an OSError
            got = part.stat().st_size if part.exists() else 0
            raise DownloadError(f"{archive.url}: the download stopped at {got:,} of "
                                f"{archive.size:,} bytes ({_reason(exc)}); run again to "
                                "resume it") from None
    got = part.stat().st_size
    if got < archive.size:
        raise DownloadError(f"{archive.url}: the server sent {got:,} of {archive.size:,} bytes;"
                            f" run again to resume the download ({part} is kept)")
    if got > archive.size or md5(part) != archive.md5:
        part.unlink()
        raise DownloadError(f"{archive.url}: checksum mismatch (size {got:,}, expected "
                            f"{archive.size:,} bytes with md5 {archive.md5}): the file is "
                            "deleted; run again to download it afresh")
    os.replace(part, file)


def extract(file: Path, root: Path, parts: list[str]) -> None:
    """Extract the zip ``file`` into a temporary folder beside it, then rename ``parts``
    into ``root``; on failure the temporary folder and the (corrupt) archive are deleted and
    ``root`` is untouched."""
    tmp = Path(tempfile.mkdtemp(dir=file.parent, prefix="extract-"))
    try:
        with zipfile.ZipFile(file) as archive:
            archive.extractall(tmp)
        _install(tmp, root, parts)
    except (OSError, zipfile.BadZipFile, EOFError, DownloadError) as exc:
        file.unlink(missing_ok=True)
        raise DownloadError(f"{file.name} could not be extracted ({_reason(exc)}): deleted; "
                            "run again to download it afresh") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


FETCHERS = {"cifar100lt": _through_torchvision(_cifar100, "cifar-100-python"),
            "voc": _through_torchvision(_voc2007, "VOCdevkit/VOC2007"),
            "coco": fetch_coco}


# ---------------------------------------------------------------- weights

def _check_timm_name(name: str) -> None:
    import timm

    model = name[len(backbones.TIMM):]
    if model not in timm.list_pretrained():
        arch = model.partition(".")[0]
        raise DownloadError(f"--pretrained {name}: timm {timm.__version__} publishes no weights "
                            f"{model!r}; see timm.list_pretrained('{arch}.*')")


def fetch_weights(name: str, quiet: bool = False) -> None:
    """timm's weights ``name`` (``timm:<model>.<tag>``) through its hub loading, the
    backbone's state dict (classifier dropped) saved atomically to their weights file."""
    import timm
    import torch

    target = backbones.weights_file(name)
    try:
        with _quiet(quiet):
            net = timm.create_model(name[len(backbones.TIMM):], pretrained=True, num_classes=0)
    except Exception as exc:  # timm and the hub raise many kinds: all one line
        raise DownloadError(f"--pretrained {name}: {_reason(exc)}") from None
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(fd)
    try:
        torch.save(net.state_dict(), tmp)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


# ---------------------------------------------------------------- helpers

def md5(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        while block := f.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()


def _install(source: Path, root: Path, parts: list[str]) -> None:
    """Rename each ``source/part`` to ``root/part`` (DownloadError if one is missing or its
    place is taken)."""
    for part in parts:
        if not (source / part).exists():
            raise DownloadError(f"the archive holds no {part}")
        if (root / part).exists():
            raise DownloadError(f"{root / part} exists but is incomplete: remove it or "
                                "complete it by hand")
    for part in parts:
        (root / part).parent.mkdir(parents=True, exist_ok=True)
        os.replace(source / part, root / part)


def _reason(exc: BaseException) -> str:
    return " ".join(f"{type(exc).__name__}: {exc}".split())[:300]


@contextlib.contextmanager
def _quiet(quiet: bool):
    """torchvision and timm print to stdout: send that to stderr, or nowhere when quiet."""
    sink = open(os.devnull, "w") if quiet else sys.stderr
    try:
        with contextlib.redirect_stdout(sink), (contextlib.redirect_stderr(sink) if quiet
                                                else contextlib.nullcontext()):
            yield
    finally:
        if quiet:
            sink.close()


def _bar(total: int, initial: int, desc: str, quiet: bool):
    from tqdm import tqdm

    from benchmarks.progress import bars_wanted

    return tqdm(total=total, initial=initial, desc=desc, unit="B", unit_scale=True,
                disable=quiet or not bars_wanted())
