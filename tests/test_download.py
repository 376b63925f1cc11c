"""--download against a local HTTP server on 127.0.0.1 serving small fake archives (their
URLs and checksums patched in): each dataset lands in the layout its builder reads, a second
run downloads nothing, a stopped download resumes, a truncated or corrupt archive is one
'error:' line with nothing half-extracted, and without --download nothing touches the
network. No test here can reach a host other than 127.0.0.1."""
import hashlib
import io
import json
import pickle
import socket
import tarfile
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import fake_cell
from benchmarks import download, streams
from benchmarks.run import main
from strategies import keyvalue

TOY = str(Path(__file__).with_name("toy_methods.py"))
LOCAL = ("127.0.0.1", "localhost")


@pytest.fixture(autouse=True)
def local_only(monkeypatch):
    """Every test here may reach 127.0.0.1 and nothing else."""
    connect, getaddrinfo = socket.socket.connect, socket.getaddrinfo

    def guarded_connect(self, address):
        if self.family in (socket.AF_INET, socket.AF_INET6) and address[0] not in LOCAL:
            raise AssertionError(f"a test tried to reach {address}")
        return connect(self, address)

    def guarded_getaddrinfo(host, *args, **kwargs):
        if host not in LOCAL:
            raise AssertionError(f"a test tried to resolve {host}")
        return getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", guarded_connect)
    monkeypatch.setattr(socket, "getaddrinfo", guarded_getaddrinfo)


class Handler(BaseHTTPRequestHandler):
    """GET of the server's ``files``; ``Range: bytes=N-`` answered 206 from byte N; a path in
    ``short`` sends only its first ``short[path]`` bytes (a truncated file)."""

    def do_GET(self):
        server = self.server
        wanted = self.headers.get("Range")
        server.log.append((self.path, wanted))
        body = server.files.get(self.path)
        if body is None:
            self.send_error(404)
            return
        body = body[:server.short.get(self.path, len(body))]
        start = int(wanted.split("=")[1].rstrip("-")) if wanted else 0
        self.send_response(206 if wanted else 200)
        self.send_header("Content-Length", str(len(body) - start))
        if wanted:
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        self.end_headers()
        try:
            self.wfile.write(body[start:])
        except (BrokenPipeError, ConnectionResetError):  # torchvision's redirect probe
            pass

    def log_message(self, *args):
        pass


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        pass

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}{path}"

    def gets(self) -> list:
        return [path for path, _ in self.log]


@pytest.fixture
def server():
    httpd = Server(("127.0.0.1", 0), Handler)
    httpd.files, httpd.short, httpd.log = {}, {}, []
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def jpeg(value: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (8, 8), (value, 255 - value, 128)).save(out, "JPEG")
    return out.getvalue()


def zip_of(files: dict) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return out.getvalue()


def tar_of(files: dict, compression: str = "") -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode=f"w:{compression}") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return out.getvalue()


def run(root, out, *extra, streams_="coco:B0-C2"):
    return main(["--methods", "toy", "--plugin", TOY, "--streams", streams_, "--seeds", "0",
                 "--data-root", str(root), "--out", str(out), "--quiet", *extra],
                cell=fake_cell.run_cell)


def one_error(capsys) -> str:
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and err.startswith("error: "), err
    return err


# ---------------------------------------------------------------- COCO

COCO_CLASSES = {3: "car", 1: "person"}  # ids not in alphabetical order of the names


def coco_json(image_ids: list, labels: list) -> bytes:
    return json.dumps({
        "images": [{"id": i, "file_name": f"{i}.jpg"} for i in image_ids],
        "annotations": [{"id": k, "image_id": i, "category_id": c, "iscrowd": 0,
                         "bbox": [0, 0, 1, 1], "area": 1.0}
                        for k, (i, c) in enumerate(zip(image_ids, labels))],
        "categories": [{"id": i, "name": n} for i, n in COCO_CLASSES.items()]}).encode()


COCO_FILES = {
    "annotations_trainval2014.zip": zip_of({
        "annotations/instances_train2014.json": coco_json([1, 2, 3, 4], [1, 3, 1, 3]),
        "annotations/instances_val2014.json": coco_json([5, 6], [3, 1]),
        "annotations/captions_train2014.json": b"{}"}),
    "train2014.zip": zip_of({f"train2014/{i}.jpg": jpeg(i) for i in (1, 2, 3, 4)}),
    "val2014.zip": zip_of({f"val2014/{i}.jpg": jpeg(i) for i in (5, 6)}),
}


@pytest.fixture
def coco_server(server, monkeypatch):
    """The server holding COCO_FILES, and COCO_ARCHIVES pointing at it."""
    archives = []
    for archive in download.COCO_ARCHIVES:
        name = archive.url.rsplit("/", 1)[1]
        server.files[f"/coco/{name}"] = COCO_FILES[name]
        archives.append(download.Archive(server.url(f"/coco/{name}"), len(COCO_FILES[name]),
                                         md5(COCO_FILES[name]), archive.parts))
    monkeypatch.setattr(download, "COCO_ARCHIVES", tuple(archives))
    return server


def test_coco_archives_provide_exactly_the_coco_layout():
    parts = [part for archive in download.COCO_ARCHIVES for part in archive.parts]
    assert sorted(parts) == sorted(streams.datasets()["coco"].layout.parts)


def test_coco_lands_in_its_layout_and_a_second_run_downloads_nothing(coco_server, tmp_path):
    root = tmp_path / "coco"
    assert run(root, tmp_path / "a", "--download") == 0
    assert sorted(coco_server.gets()) == sorted(f"/coco/{n}" for n in COCO_FILES)
    assert (root / "train2014" / "3.jpg").read_bytes() == jpeg(3)
    assert not (root / ".download").exists()  # archives deleted once extracted
    assert not (root / "annotations" / "captions_train2014.json").exists()  # only what's used
    built = streams.build("coco:B0-C2", str(root))  # the builder reads what landed
    assert built.info.class_names == ["car", "person"]
    assert built.info.class_counts == [2, 2]
    assert run(root, tmp_path / "b", "--download") == 0
    assert len(coco_server.log) == 3  # nothing downloaded the second time


def test_a_stopped_download_resumes_where_it_stopped(coco_server, tmp_path, capsys):
    root, path = tmp_path / "coco", "/coco/annotations_trainval2014.zip"
    full = coco_server.files[path]
    coco_server.short[path] = half = len(full) // 2
    assert run(root, tmp_path / "a", "--download") == 2
    err = one_error(capsys)
    assert f"the server sent {half:,} of {len(full):,} bytes" in err and "resume" in err
    part = root / ".download" / "coco" / "annotations_trainval2014.zip.part"
    assert part.read_bytes() == full[:half]
    assert not (root / "annotations").exists() and not (tmp_path / "a" / "records").exists()
    del coco_server.short[path]
    assert run(root, tmp_path / "a", "--download") == 0
    assert coco_server.log[1] == (path, f"bytes={half}-")  # only the rest was asked for
    assert (root / "annotations" / "instances_val2014.json").read_bytes() == coco_json(
        [5, 6], [3, 1])


def test_a_corrupt_archive_is_one_error_and_deleted_before_any_extraction(
        coco_server, tmp_path, capsys):
    root, path = tmp_path / "coco", "/coco/train2014.zip"
    good = coco_server.files[path]
    coco_server.files[path] = bytes(b ^ 0xFF for b in good)  # same size, other bytes
    assert run(root, tmp_path / "a", "--download") == 2
    assert "checksum mismatch" in one_error(capsys)
    assert not (root / "train2014").exists() and not (root / "val2014").exists()
    assert list((root / ".download" / "coco").iterdir()) == []  # the bad part deleted
    coco_server.files[path] = good
    assert run(root, tmp_path / "a", "--download") == 0  # afresh, then the rest
    assert (root / "val2014" / "6.jpg").read_bytes() == jpeg(6)


def test_an_archive_that_does_not_extract_leaves_nothing_half_extracted(
        coco_server, tmp_path, capsys, monkeypatch):
    good = COCO_FILES["val2014.zip"]  # 5.jpg then 6.jpg, stored: a flipped byte in 6.jpg
    at = good.index(jpeg(6)) + 100    # fails its CRC once 5.jpg is already extracted
    broken = good[:at] + bytes([good[at] ^ 0xFF]) + good[at + 1:]
    coco_server.files["/coco/val2014.zip"] = broken
    archives = list(download.COCO_ARCHIVES)  # its published checksum is the broken file's
    archives[2] = download.Archive(archives[2].url, len(broken), md5(broken),
                                   archives[2].parts)
    monkeypatch.setattr(download, "COCO_ARCHIVES", tuple(archives))
    root = tmp_path / "coco"
    assert run(root, tmp_path / "a", "--download") == 2
    assert "val2014.zip could not be extracted (BadZipFile: Bad CRC-32" in one_error(capsys)
    assert not (root / "val2014").exists()
    assert list((root / ".download" / "coco").iterdir()) == []  # no extract-*, no archive
    assert (root / "train2014").is_dir()  # the archives before it stay installed


# ---------------------------------------------------------------- torchvision's datasets

def cifar_archive() -> tuple[bytes, dict]:
    """A CIFAR-100 python-version archive of 2 train and 2 test images, and the md5 of each
    file inside (torchvision checks them)."""
    def batch(n):
        return pickle.dumps({"data": np.zeros((n, 3072), np.uint8), "fine_labels": [0] * n,
                             "coarse_labels": [0] * n})
    files = {"cifar-100-python/train": batch(2), "cifar-100-python/test": batch(2),
             "cifar-100-python/meta": pickle.dumps({"fine_label_names": ["apple"] * 100})}
    return tar_of(files, "gz"), {name.split("/")[1]: md5(data) for name, data in files.items()}


@pytest.fixture
def cifar_server(server, monkeypatch):
    from torchvision.datasets import CIFAR100

    archive, sums = cifar_archive()
    server.files["/cifar-100-python.tar.gz"] = archive
    monkeypatch.setattr(CIFAR100, "url", server.url("/cifar-100-python.tar.gz"))
    monkeypatch.setattr(CIFAR100, "tgz_md5", md5(archive))
    monkeypatch.setattr(CIFAR100, "train_list", [["train", sums["train"]]])
    monkeypatch.setattr(CIFAR100, "test_list", [["test", sums["test"]]])
    monkeypatch.setattr(CIFAR100, "meta", {**CIFAR100.meta, "md5": sums["meta"]})
    return server


def test_cifar100_comes_through_torchvision_once(cifar_server, tmp_path):
    root = tmp_path / "data"
    assert run(root, tmp_path / "a", "--download", streams_="cifar100lt:B0-C5") == 0
    assert sorted(p.name for p in (root / "cifar-100-python").iterdir()) == [
        "meta", "test", "train"]
    assert not (root / ".download").exists()
    streams.check("cifar100lt:B0-C5", str(root))
    requests = len(cifar_server.log)
    assert run(root, tmp_path / "b", "--download", streams_="cifar100lt:B0-C5") == 0
    assert len(cifar_server.log) == requests


def test_a_truncated_torchvision_archive_is_one_error_with_nothing_extracted(
        cifar_server, tmp_path, capsys):
    path = "/cifar-100-python.tar.gz"
    cifar_server.short[path] = len(cifar_server.files[path]) // 2
    root = tmp_path / "data"
    assert run(root, tmp_path / "a", "--download", streams_="cifar100lt:B0-C5") == 2
    assert "File not found or corrupted" in one_error(capsys)
    assert not (root / "cifar-100-python").exists()
    assert not (root / ".download" / "cifar100lt" / "cifar-100-python").exists()


def voc_xml(names: list) -> bytes:
    objects = "".join(f"<object><name>{n}</name><difficult>0</difficult></object>"
                      for n in names)
    return f"<annotation>{objects}</annotation>".encode()


def voc_archive(split: str, ids: dict) -> bytes:
    base = "VOCdevkit/VOC2007"
    files = {f"{base}/ImageSets/Main/{split}.txt": "\n".join(ids).encode()}
    for i, (image_id, names) in enumerate(ids.items()):
        files[f"{base}/Annotations/{image_id}.xml"] = voc_xml(names)
        files[f"{base}/JPEGImages/{image_id}.jpg"] = jpeg(10 * i)
    return tar_of(files)


def test_voc2007_trainval_and_test_come_through_torchvision(server, monkeypatch, tmp_path):
    from torchvision.datasets import voc

    for key, split, ids in [("2007", "trainval", {"000001": ["dog"], "000002": ["cat"]}),
                            ("2007-test", "test", {"000003": ["aeroplane", "dog"]})]:
        archive = voc_archive(split, ids)
        server.files[f"/{split}.tar"] = archive
        monkeypatch.setitem(voc.DATASET_YEAR_DICT, key, {
            **voc.DATASET_YEAR_DICT[key], "url": server.url(f"/{split}.tar"), "md5": md5(archive)})
    root = tmp_path / "data"
    assert run(root, tmp_path / "a", "--download", streams_="voc:B0-C4") == 0
    built = streams.build("voc:B0-C4", str(root))  # found under VOCdevkit/VOC2007
    assert built.info.class_counts[CLASSES_VOC.index("cat")] == 1
    assert len(built.benchmark.test_stream[-1].dataset) == 1
    assert not (root / ".download").exists()
    requests = len(server.log)
    assert run(root, tmp_path / "b", "--download", streams_="voc:B0-C4") == 0
    assert len(server.log) == requests


CLASSES_VOC = ["aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair",
               "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant",
               "sheep", "sofa", "train", "tvmonitor"]


# ---------------------------------------------------------------- offline by default

def test_without_download_nothing_touches_the_network(monkeypatch, tmp_path, capsys):
    def refuse(*args, **kwargs):
        raise AssertionError("the network was touched without --download")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(download, "fetch", refuse)
    monkeypatch.setenv("IMBACIL_WEIGHTS", str(tmp_path / "weights"))
    for stream in ("coco:B0-C2", "voc:B0-C4", "cifar100lt:B0-C5"):
        assert run(tmp_path / "empty", tmp_path / "a", streams_=stream) == 2
        assert "add --download to fetch them" in one_error(capsys)
    assert run(tmp_path / "empty", tmp_path / "a", "--backbone", "timm:resnet10t",
               "--pretrained", "timm:resnet10t.c3_in1k", streams_="digits:B0-C2") == 2
    assert "add --download to fetch it through timm" in one_error(capsys)
    assert run(tmp_path / "empty", tmp_path / "a", streams_="digits:B0-C2") == 0


def test_download_needs_a_data_root_and_checks_the_rest_first(server, tmp_path, capsys):
    assert main(["--methods", "toy", "--plugin", TOY, "--streams", "coco:B0-C2",
                 "--download", "--out", str(tmp_path / "a")]) == 2
    assert "--download needs --data-root" in one_error(capsys)
    assert run(tmp_path / "coco", tmp_path / "a", "--download", "--set", "toy.nope=1") == 2
    one_error(capsys)
    assert server.log == [] and not (tmp_path / "coco").exists()


# ---------------------------------------------------------------- weights by name

RGB = "synthetic:B0-C5?classes=10&train=200&test=50&size=16"  # 3 channels, as timm's weights

def test_named_timm_weights_are_fetched_once_and_every_cell_reads_them(
        monkeypatch, tmp_path, capsys):
    import timm
    import torch

    from benchmarks import models
    from benchmarks.cell import weights_of

    calls, create = [], timm.create_model

    def hub(name, pretrained=False, **kwargs):  # timm's hub, minus the network
        if pretrained:
            calls.append(name)
            torch.manual_seed(len(calls))
        return create(name, pretrained=False, **kwargs)

    monkeypatch.setattr(timm, "create_model", hub)
    monkeypatch.setenv("IMBACIL_WEIGHTS", str(tmp_path / "weights"))
    argv = ["--backbone", "timm:resnet10t", "--pretrained", "timm:resnet10t.c3_in1k",
            "--download"]
    assert run(tmp_path, tmp_path / "a", *argv, streams_=RGB) == 0
    assert calls == ["resnet10t.c3_in1k"]
    saved = tmp_path / "weights" / "timm-resnet10t.c3_in1k.pth"
    assert run(tmp_path, tmp_path / "b", *argv, streams_=RGB) == 0
    assert len(calls) == 1  # nothing fetched the second time
    monkeypatch.setattr(timm, "create_model", create)
    net = models.build("timm:resnet10t", 5, pretrained="timm:resnet10t.c3_in1k")
    state = torch.load(saved, weights_only=True)
    assert all(torch.equal(v, state[k]) for k, v in net.backbone.state_dict().items())
    assert weights_of("timm:resnet10t.c3_in1k")["name"] == "timm:resnet10t.c3_in1k"
    capsys.readouterr()
    assert run(tmp_path, tmp_path / "d", *argv, streams_="digits:B0-C2") == 2  # 1 channel
    assert "do not fit backbone 'timm:resnet10t'" in one_error(capsys)
    argv[3] = "timm:resnet10t.no_such_tag"
    assert run(tmp_path, tmp_path / "c", *argv, streams_=RGB) == 2
    assert "publishes no weights 'resnet10t.no_such_tag'" in one_error(capsys)


# ---------------------------------------------------------------- the shared option parser

def test_the_option_parser_splits_types_and_refuses_in_words_both_layers_use():
    assert keyvalue.split("prs?rho=0&x=1") == ("prs", "rho=0&x=1")
    assert keyvalue.pairs("a=1&&b=") == {"a": "1", "b": ""}
    with pytest.raises(keyvalue.PairError) as err:
        keyvalue.pairs("a=1&a=2")
    assert err.value.key == "a" and str(err.value) == "'a' given twice"
    assert keyvalue.typed("3", 1, low=0) == 3 and keyvalue.typed("0.5", 1.0) == 0.5
    for raw, default, kwargs, problem in [("x", 1, {}, "type"), ("inf", 1.0, {}, "type"),
                                          ("c", "a", {"choices": ("a", "b")}, "choice"),
                                          ("5", 1, {"low": 0, "high": 4}, "range")]:
        with pytest.raises(keyvalue.Refused) as err:
            keyvalue.typed(raw, default, **kwargs)
        assert err.value.problem == problem
    assert keyvalue.range_text(int, 0, None) == "int >= 0"
    assert keyvalue.range_text(float, None, 2) == "float <= 2"


def test_tuning_downloads_through_the_same_flag_and_a_config_file_turns_it_on(
        coco_server, tmp_path):
    from benchmarks.tune import main as tune

    root = tmp_path / "coco"
    assert tune(["--methods", "toy", "--plugin", TOY, "--streams", "coco:B0-C2", "--budget",
                 "1", "--data-root", str(root), "--download", "--out", str(tmp_path / "t"),
                 "--quiet"], cell=fake_cell.run_cell) == 0
    assert (root / "val2014" / "5.jpg").is_file() and len(coco_server.log) == 3
    config = tmp_path / "grid.yaml"
    config.write_text(f"methods: [toy]\nplugins: [{TOY}]\nstreams: [coco:B0-C2]\n"
                      f"data_root: {root}\ndownload: true\nseeds: [0]\n")
    (root / "val2014" / "5.jpg").unlink()
    (root / "val2014" / "6.jpg").unlink()
    (root / "val2014").rmdir()
    assert main(["--config", str(config), "--out", str(tmp_path / "r"), "--quiet"],
                cell=fake_cell.run_cell) == 0
    assert coco_server.gets()[3:] == ["/coco/val2014.zip"]  # only what was missing
