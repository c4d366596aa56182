"""Batches on a Dask cluster (--scheduler): a real scheduler and two single-threaded worker processes
on 127.0.0.1, started once for the module. The reference is the same command run on this machine:
stdout, stderr and the exit code must be the same bytes (timing fields aside), and so must the
files it writes. Faults are real too: a worker killed mid-batch, a scheduler that is not there, a
worker with another cnncli."""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import on_a_terminal

distributed = pytest.importorskip("distributed")

from cnncli import __version__, cluster as dask_path  # noqa: E402
from cnncli.cluster import connect  # noqa: E402
from cnncli.cli import main  # noqa: E402
from cnncli.cli import inspect as inspect_command, run as run_command  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "sample_images"


@pytest.fixture(scope="module")
def scheduler():
    """The address of a LocalCluster of two single-threaded worker processes, for the whole module.
    Its scheduler gives up on a task after two worker deaths (Dask's default is four). Its nannies
    set their workers' variables (OMP_NUM_THREADS=1, MALLOC_TRIM_THRESHOLD_, ...) in this process;
    they are put back afterwards, or every later test's child processes would inherit them."""
    import dask

    environ = dict(os.environ)
    try:
        with dask.config.set({"distributed.scheduler.allowed-failures": 1}):
            with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0",
                                          silence_logs=logging.CRITICAL) as cluster:
                yield cluster.scheduler_address
    finally:
        os.environ.clear()
        os.environ.update(environ)


@pytest.fixture
def client(scheduler):
    with distributed.Client(scheduler, set_as_default=False) as client:
        yield client


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """Twelve digits and, at position 5, a file that is not a picture."""
    folder = tmp_path_factory.mktemp("digits")
    digits = sorted(SAMPLES.glob("digit_*.png"))
    for i in range(12):
        if i == 5:
            (folder / f"{i:02d}.png").write_bytes(b"not a picture")
        else:
            shutil.copy(digits[i % len(digits)], folder / f"{i:02d}.png")
    return folder


def cnn(capsysbinary, *args) -> tuple[int, bytes, bytes]:
    code = main([str(arg) for arg in args])
    captured = capsysbinary.readouterr()
    return code, captured.out, captured.err


def both(capsysbinary, scheduler, *args) -> tuple[tuple, tuple]:
    """The command run here and on the cluster: (code, stdout, stderr) of each."""
    return cnn(capsysbinary, *args), cnn(capsysbinary, *args, "--scheduler", scheduler)


def cnn_tasks(client) -> list[str]:
    """The keys of cnn's tasks the scheduler still holds."""
    return client.run_on_scheduler(lambda dask_scheduler: [str(key) for key in dask_scheduler.tasks
                                                           if str(key).startswith("cnn-")])


def wait_until(check, seconds: float = 10.0):
    deadline = time.monotonic() + seconds
    while not (value := check()) and time.monotonic() < deadline:
        time.sleep(0.05)
    return value


# --- the same bytes as a run on this machine ------------------------------------------------------


@pytest.mark.parametrize("args", [
    ("--model", "digits", "-f", "jsonl"),
    ("--model", "digits", "-f", "csv"),
    ("-k", "sobel_x", "-f", "npy"),
    ("-k", "sobel_x", "--view", "heatmap"),
], ids=["jsonl", "csv-predictions", "stacked-npy", "heatmap-tables"])
def test_a_batch_on_the_cluster_prints_what_a_local_run_prints(capsysbinary, scheduler, folder, args):
    """stdout, stderr (the broken image's line, the final count) and the exit code are the same bytes."""
    local, remote = both(capsysbinary, scheduler, "run", folder, *args)
    assert local[0] == 1 and b"05.png: not a supported image" in local[2]
    assert remote == local


def test_files_written_from_the_cluster_are_the_local_ones(capsysbinary, scheduler, folder, tmp_path):
    """-o of an .npz and of a folder of pictures: the same files, byte for byte, and the same messages."""
    results = {}
    for where in ("here", "there"):
        extra = ("--scheduler", scheduler) if where == "there" else ()
        npz = cnn(capsysbinary, "run", folder, "--model", "digits", "-o", tmp_path / f"{where}.npz", *extra)
        pictures = cnn(capsysbinary, "run", folder, "-k", "sobel_x", "-o", f"{tmp_path / where}/", *extra)
        results[where] = (npz[0], npz[2].replace(where.encode(), b"X"), pictures[0],
                          pictures[2].replace(where.encode(), b"X"))
    assert results["there"] == results["here"]
    assert (tmp_path / "there.npz").read_bytes() == (tmp_path / "here.npz").read_bytes()
    here = sorted(p.name for p in (tmp_path / "here").iterdir())
    assert len(here) == 11 and sorted(p.name for p in (tmp_path / "there").iterdir()) == here
    for name in here:
        assert (tmp_path / "there" / name).read_bytes() == (tmp_path / "here" / name).read_bytes()


def test_timing_fields_aside_the_json_trace_is_the_same(capsysbinary, scheduler, folder):
    """With --timing, only the "seconds" of each layer differ (and they are there, as numbers)."""

    def without_times(document):
        for image in document:
            for layer in image.get("layers", []):
                assert isinstance(layer.pop("seconds"), float)
        return document

    local, remote = both(capsysbinary, scheduler, "run", folder, "--model", "digits", "-f", "json", "--timing")
    assert (remote[0], remote[2]) == (local[0], local[2])
    assert without_times(json.loads(remote[1])) == without_times(json.loads(local[1]))


def test_inspect_saves_the_same_folders_from_the_cluster(capsysbinary, scheduler, folder, tmp_path):
    """inspect --save writes, on the workers, the folders a local run writes: every file the same
    (arrays and manifests; pictures take a third of a second an image, and are written alike)."""
    args = ("--model", "digits", "-f", "jsonl", "--no-pictures")
    local = cnn(capsysbinary, "inspect", folder, "--save", tmp_path / "here", *args)
    remote = cnn(capsysbinary, "inspect", folder, "--save", tmp_path / "there", *args, "--scheduler", scheduler)
    assert remote[0] == local[0] == 1
    assert remote[1].replace(b"/there/", b"/here/") == local[1]
    assert remote[2].replace(b"there", b"here") == local[2]
    files = sorted(p.relative_to(tmp_path / "here") for p in (tmp_path / "here").rglob("*"))
    assert len(files) > 11 * 3 and sorted(p.relative_to(tmp_path / "there")
                                          for p in (tmp_path / "there").rglob("*")) == files
    for name in files:
        if (tmp_path / "here" / name).is_file():
            assert (tmp_path / "there" / name).read_bytes() == (tmp_path / "here" / name).read_bytes(), name


def test_fail_fast_stops_as_a_local_run_stops_and_cancels_the_rest(capsysbinary, scheduler, client, folder):
    """--fail-fast: the same output up to the broken image, the rest marked not run, exit 1; the
    cluster is left with none of the batch's tasks."""
    local, remote = both(capsysbinary, scheduler, "run", folder, "--model", "digits", "-f", "jsonl", "--fail-fast")
    assert local[0] == 1 and b"--fail-fast" in local[2]
    assert remote == local
    assert wait_until(lambda: not cnn_tasks(client)), cnn_tasks(client)


def test_a_bad_option_ends_the_batch_as_a_usage_error(capsysbinary, scheduler, folder):
    """An option the core refuses on the worker (--top of a kernel run) is the same usage line and exit 2."""
    local, remote = both(capsysbinary, scheduler, "run", folder, "-k", "sobel_x", "--top", "2", "-f", "jsonl")
    assert local[0] == 2 and remote == local


# --- images as bytes ---------------------------------------------------------------------------


def _fifos(folder: Path, tmp_path: Path, count: int) -> tuple[list[Path], threading.Thread]:
    """Named pipes holding the first ``count`` images of ``folder``, each readable once: a thread
    writes each in turn, so only the process that reads them in order (this one) gets them."""
    sources = sorted(folder.iterdir())[:count]
    pipes = []
    for source in sources:
        pipe = tmp_path / source.name
        os.mkfifo(pipe)
        pipes.append(pipe)

    def feed():
        for source, pipe in zip(sources, pipes):
            with open(pipe, "wb") as stream:
                stream.write(source.read_bytes())

    writer = threading.Thread(target=feed, daemon=True)
    writer.start()
    return pipes, writer


def test_ship_bytes_sends_images_the_workers_cannot_read(capsysbinary, scheduler, folder, tmp_path):
    """--ship-bytes: images that only this process can read (named pipes fed once each) run on the
    workers, and print what a local run of the same pipes prints."""
    outputs = []
    for where in ("here", "there"):
        (tmp_path / where).mkdir()
        pipes, writer = _fifos(folder, tmp_path / where, 7)
        extra = ("--scheduler", scheduler, "--ship-bytes") if where == "there" else ()
        code, out, err = cnn(capsysbinary, "run", *pipes, "--model", "digits", "-f", "jsonl", *extra)
        writer.join(timeout=10)
        assert not writer.is_alive()
        outputs.append((code, out.replace(where.encode(), b"X"), err.replace(where.encode(), b"X")))
    assert outputs[0][0] == 1 and outputs[0][2].count(b"\n") == 2  # the broken image's line, the count
    assert outputs[1] == outputs[0]


def test_stdin_in_a_batch_is_read_here_and_sent(capsysbinary, scheduler, folder, monkeypatch):
    """`-` among a batch's images is this process's stdin: read here and sent, as --ship-bytes does."""
    import io

    data = (folder / "00.png").read_bytes()
    results = []
    for extra in ((), ("--scheduler", scheduler)):
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))
        results.append(cnn(capsysbinary, "run", "-", folder / "01.png", "--model", "digits", "-f", "jsonl", *extra))
    assert results[0][0] == 0 and b'"stdin"' in results[0][1]
    assert results[1] == results[0]


# --- faults ------------------------------------------------------------------------------------


def _die_once(marker: Path, source: str, victim: str) -> None:
    """SIGKILL this worker process, the first time it reaches ``victim`` (as the OOM killer would)."""
    if source.endswith(victim) and not marker.exists():
        marker.write_text(str(os.getpid()))
        os.kill(os.getpid(), signal.SIGKILL)


class DyingRunJob(run_command.RunJob):
    """RunJob, whose worker dies on image 02.png the first time (the file ``marker`` records it)."""

    marker: Path  # set by the test; each job keeps its own (it travels with the job)

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.marker = type(self).marker

    def __call__(self, position: int, source: str):
        _die_once(self.marker, source, "02.png")
        return super().__call__(position, source)


class DyingInspectJob(inspect_command.InspectJob):
    """InspectJob, whose worker dies the first time it has saved image 02.png, before its result
    goes back: the image's next run finds its folder whole, as a rerun of a result lost with its
    worker does."""

    marker: Path

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.marker = type(self).marker

    def __call__(self, position: int, source: str):
        outcome = super().__call__(position, source)
        _die_once(self.marker, source, "02.png")
        return outcome


def test_a_worker_killed_mid_batch_loses_no_image_and_repeats_none(capsysbinary, scheduler, client, folder,
                                                                    tmp_path, monkeypatch):
    """SIGKILL to the worker running image 02: Dask runs its task again elsewhere, and the output is
    a local run's, each image once, in order; the worker comes back."""
    local = cnn(capsysbinary, "run", folder, "--model", "digits", "-f", "jsonl")
    DyingRunJob.marker = tmp_path / "died"
    monkeypatch.setattr(run_command, "RunJob", DyingRunJob)
    remote = cnn(capsysbinary, "run", folder, "--model", "digits", "-f", "jsonl", "--scheduler", scheduler)
    assert (tmp_path / "died").exists()  # a worker did die
    assert remote == local and remote[1].count(b"\n") == 12
    assert wait_until(lambda: len(client.scheduler_info()["workers"]) == 2, 20)


class PoisonRunJob(run_command.RunJob):
    """RunJob, whose worker dies on image 03.png every time."""

    def __call__(self, position: int, source: str):
        if source.endswith("03.png"):
            os.kill(os.getpid(), signal.SIGKILL)
        return super().__call__(position, source)


def test_an_image_that_keeps_killing_workers_fails_alone(capsysbinary, scheduler, client, folder, monkeypatch):
    """An image whose every run kills its worker: once the scheduler gives up on it, that image
    fails (one line, its place kept) and every other image comes back as a local run gives it."""
    local = cnn(capsysbinary, "run", folder, "--model", "digits", "-f", "jsonl")
    monkeypatch.setattr(run_command, "RunJob", PoisonRunJob)
    code, out, err = cnn(capsysbinary, "run", folder, "--model", "digits", "-f", "jsonl", "--scheduler", scheduler)
    assert code == 1 and err.decode().splitlines() == [
        f"cnn: {folder / '03.png'}: the Dask workers running it kept dying (out of memory?); the scheduler gave up "
        "on it",
        f"cnn: {folder / '05.png'}: not a supported image; expected one of PNG, JPEG, BMP, GIF, TIFF, WEBP",
        "cnn: batch: 2 of 12 images failed; each is named above"]
    lines, expected = out.splitlines(), local[1].splitlines()
    assert len(lines) == 12 and json.loads(lines[3])["error"].endswith("the scheduler gave up on it")
    assert lines[:3] + lines[4:] == expected[:3] + expected[4:]
    assert wait_until(lambda: len(client.scheduler_info()["workers"]) == 2, 20)


def test_a_worker_killed_while_saving_leaves_every_folder_whole(capsysbinary, scheduler, client, folder,
                                                                tmp_path, monkeypatch):
    """inspect --save, a worker killed after saving an image: the image runs again and replaces what
    its first run placed (no "earlier inspection" refusal), every folder is whole, and no marker of
    the batch is left."""
    DyingInspectJob.marker = tmp_path / "died"
    monkeypatch.setattr(inspect_command, "InspectJob", DyingInspectJob)
    save = tmp_path / "acts"
    code, out, err = cnn(capsysbinary, "inspect", folder, "--model", "digits", "--save", save, "-f", "jsonl",
                         "--no-pictures", "--scheduler", scheduler)
    assert (tmp_path / "died").exists()
    assert code == 1 and err.decode().splitlines() == [
        f"cnn: {folder / '05.png'}: not a supported image; expected one of PNG, JPEG, BMP, GIF, TIFF, WEBP",
        f"saved 11 inspections to {save}, one folder per image",
        "cnn: batch: 1 of 12 images failed; each is named above"]
    assert sorted(p.name for p in save.iterdir()) == [f"{i:02d}" for i in range(12) if i != 5]
    for image in save.iterdir():
        manifest = json.loads((image / "manifest.json").read_text())
        assert sorted(p.name for p in image.iterdir()) == sorted(
            ["manifest.json"] + [layer["file"] for layer in manifest["layers"]])
    assert wait_until(lambda: len(client.scheduler_info()["workers"]) == 2, 20)


def test_an_unreachable_scheduler_is_one_line_within_the_timeout(capsysbinary, folder):
    """Nothing listening at the address: one cnn: line naming it and the timeout, exit 1, in about
    --connect-timeout (1 s here; allowed 3 s more for importing Dask on a busy machine)."""
    with socket.socket() as probe:  # a port that was free a moment ago: nothing listens there
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    address = f"tcp://127.0.0.1:{port}"
    started = time.monotonic()
    code, out, err = cnn(capsysbinary, "run", folder, "-k", "sobel_x", "-f", "jsonl", "--scheduler", address,
                         "--connect-timeout", "1")
    elapsed = time.monotonic() - started
    assert code == 1 and out == b""
    lines = err.decode().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        f"cnn: {address}: cannot reach the Dask scheduler within 1 s (--connect-timeout): ")
    assert 1.0 <= elapsed < 4.0


def test_the_scheduler_address_can_come_from_the_environment(capsysbinary, scheduler, folder, monkeypatch):
    """CNN_SCHEDULER is --scheduler: the batch runs there (an address that is not one says so)."""
    monkeypatch.setenv("CNN_SCHEDULER", "nowhere")
    code, out, err = cnn(capsysbinary, "run", folder, "-k", "sobel_x", "-f", "jsonl")
    assert code == 1 and err.decode().startswith("cnn: nowhere: is not a Dask scheduler's address")
    monkeypatch.setenv("CNN_SCHEDULER", scheduler)
    assert cnn(capsysbinary, "run", folder, "--model", "digits", "-f", "jsonl")[1].count(b"\n") == 12


def test_a_worker_with_another_cnncli_is_named_with_both_versions(capsysbinary, scheduler, client, folder,
                                                                   tmp_path):
    """A third worker whose Python finds another cnncli (a package of that name earlier on its
    PYTHONPATH, reporting version 0.0.1): one line naming that worker and both versions, exit 1,
    and no task is sent."""
    other = tmp_path / "other" / "cnncli"
    other.mkdir(parents=True)
    (other / "__init__.py").write_text('__version__ = "0.0.1"\n')
    env = {**os.environ, "PYTHONPATH": str(other.parent)}
    worker = subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_worker", scheduler, "--nthreads", "1",
                               "--no-nanny", "--name", "other", "--no-dashboard"], env=env, cwd=other.parent,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        client.wait_for_workers(3, timeout=60)
        address = next(a for a, info in client.scheduler_info()["workers"].items() if info["name"] == "other")
        code, out, err = cnn(capsysbinary, "run", folder, "-k", "sobel_x", "-f", "jsonl", "--scheduler", scheduler)
        assert (code, out) == (1, b""), err
        assert err.decode() == (f"cnn: {address}: this Dask worker has cnncli 0.0.1, this client cnncli {__version__}; "
                                "install the same version on every worker\n")
        assert not cnn_tasks(client)
    finally:
        worker.terminate()
        worker.wait(timeout=30)
    assert wait_until(lambda: len(client.scheduler_info()["workers"]) == 2, 20)


def test_a_worker_without_cnncli_is_named():
    """A worker on which cnncli does not import answers None: its line says so, with this version."""

    class Client:
        def wait_for_workers(self, n, timeout):
            pass

        def run(self, function, on_error):
            return {"tcp://10.0.0.2:4000": __version__, "tcp://10.0.0.3:4000": None}

    with pytest.raises(Exception) as caught:
        connect.check_workers(Client(), dask_path.ClusterSettings("tcp://10.0.0.1:8786"))
    assert str(caught.value) == (f"tcp://10.0.0.3:4000: this Dask worker has no cnncli (this client has cnncli "
                                 f"{__version__}); pip install cnncli=={__version__} on every worker")


def test_the_version_probe_runs_where_cnncli_does_not_import(tmp_path):
    """The function sent to ask a worker's version travels by value: a Python that cannot import
    cnncli unpickles and runs it, and it answers None."""
    from distributed.protocol.pickle import dumps

    captured = {}

    class Client:
        def wait_for_workers(self, n, timeout):
            pass

        def run(self, function, on_error):
            captured["pickled"] = dumps(function)
            return {}

        def nthreads(self):
            return {}

    connect.check_workers(Client(), dask_path.ClusterSettings("tcp://10.0.0.1:8786"))
    blocker = tmp_path / "cnncli.py"
    blocker.write_text("raise ImportError('no cnncli here')\n")
    (tmp_path / "probe").write_bytes(captured["pickled"])
    answer = subprocess.run([sys.executable, "-c", "import pickle, sys; f = pickle.load(open('probe', 'rb')); "
                             "print(f()); print('cnncli.cluster' in sys.modules)"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert answer.stdout.split() == ["None", "False"], answer.stderr


# --- the client's side ---------------------------------------------------------------------------


class Echo:
    """A job that returns its image's name and ``size`` bytes, a little later."""

    def __init__(self, size: int) -> None:
        self.size = size

    def __call__(self, position: int, source: str):
        from cnncli.pool import Outcome

        time.sleep(0.002)
        return Outcome({"name": source, "data": bytes(self.size)})


@pytest.mark.parametrize("size, bound", [(4096, 64), (10, 512)], ids=["64-images", "512-small-images"])
def test_the_client_holds_a_bounded_window_of_images(scheduler, monkeypatch, size, bound):
    """At each submission, no image is sent more than the window past the last one handed on: 64
    images, or up to 512 while that many hold less than the byte budget (64 KiB here); every image
    comes back once, in order, and quick images go several to a task."""
    ahead = []
    handed = [0]
    submit = dask_path._Batch._submit

    def watched(self, positions, done, arrived):
        ahead.append(positions[-1] + 1 - handed[0])
        return submit(self, positions, done, arrived)

    monkeypatch.setattr(dask_path._Batch, "_submit", watched)
    monkeypatch.setattr(dask_path, "WINDOW_BYTES", 64 << 10)
    sources = [f"image{i}" for i in range(700)]
    names = []
    for result in dask_path.cluster_results(Echo(size), sources, str, dask_path.ClusterSettings(scheduler),
                                            read=lambda source: b""):
        names.append(result.outcome.parts["name"])
        handed[0] += 1
    assert names == sources
    assert bound // 2 < max(ahead) <= bound
    assert len(ahead) < 700 // 4


def test_the_model_is_loaded_once_per_worker(capsysbinary, scheduler, client, folder):
    """Twelve images of a model file: each worker reads the model at most once (counted on the
    workers, with their cache emptied first), and the two together at least once."""

    def count_loads():
        from cnncli import stage
        from cnncli.io import modelfile

        stage._READ.clear()
        real = getattr(modelfile.load_model, "real", modelfile.load_model)

        def load_model(*args, **kwargs):
            load_model.calls += 1
            return real(*args, **kwargs)

        load_model.calls, load_model.real = 0, real
        modelfile.load_model = load_model

    def loads():
        from cnncli.io import modelfile

        return getattr(modelfile.load_model, "calls", None)

    client.run(count_loads)
    model = ROOT / "cnncli" / "models" / "digits.json"
    code, out, _ = cnn(capsysbinary, "run", folder, "--model", model, "-f", "jsonl", "--scheduler", scheduler)
    counts = client.run(loads)
    assert code == 1 and out.count(b"\n") == 12
    assert len(counts) == 2 and all(count in (0, 1) for count in counts.values()) and sum(counts.values()) >= 1


def test_the_progress_bar_is_drawn_on_a_terminal(scheduler, folder):
    """On a terminal's stderr, a cluster batch draws the bar (images done of the total), as a local one does."""
    code, drawn = on_a_terminal([sys.executable, "-m", "cnncli", "run", str(folder), "--model", "digits", "-f", "jsonl",
                                 "--scheduler", scheduler], cwd=ROOT, env={**os.environ, "COLUMNS": "100"})
    assert code == 1
    assert b"images" in drawn and b"/12" in drawn


def test_ctrl_c_cancels_the_tasks_and_leaves_no_file(scheduler, client, tmp_path):
    """Ctrl-C mid-batch: exit 130 with one line, no -o file (not even half of one), and the
    scheduler soon holds none of the batch's tasks."""
    from PIL import Image

    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for i in range(24):  # about 0.15 s each as JSON: still running when the signal comes
        Image.fromarray(rng.integers(0, 256, (384, 384), dtype=np.uint8)).save(images / f"{i:03d}.png",
                                                                               compress_level=1)
    child = subprocess.Popen([sys.executable, "-m", "cnncli", "run", str(images), "-k", "gaussian_3x3", "-o",
                              str(tmp_path / "all.npy"), "-f", "jsonl", "--scheduler", scheduler],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)
    assert child.stdout.readline()  # the first image is written: the batch is under way
    child.send_signal(signal.SIGINT)
    _, err = child.communicate(timeout=60)
    assert child.returncode == 130 and err.decode().splitlines() == ["cnn: interrupted"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["images"]
    assert wait_until(lambda: not cnn_tasks(client), 20), cnn_tasks(client)


def test_a_local_cluster_leaves_the_environment_as_it_found_it(capsysbinary, folder, tmp_path):
    """Dask's nannies set OMP_NUM_THREADS=1, MALLOC_TRIM_THRESHOLD_ and more in the process that starts
    a LocalCluster, for their workers; after `--scheduler local` every variable is back, so that the
    process's later children (a library user's, or a test's) do not inherit them."""
    before = dict(os.environ)
    code, _, err = cnn(capsysbinary, "run", folder, "-k", "sobel_x", "-o", tmp_path / "edges.npy", "--scheduler",
                       "local", "--workers", "1")
    assert code == 1 and b"Traceback" not in err  # the folder holds one image that always fails
    assert dict(os.environ) == before


# --- without Dask, and the options that need it --------------------------------------------------


def test_without_dask_the_option_says_how_to_install_it(capsysbinary, folder, monkeypatch):
    """--scheduler without the dask extra: one line with the pip command, exit 1."""
    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed raises ImportError
    code, out, err = cnn(capsysbinary, "run", folder, "-k", "sobel_x", "-f", "jsonl", "--scheduler", "local")
    assert (code, out) == (1, b"")
    assert err == (b"cnn: --scheduler: runs batches on Dask's distributed scheduler, which is not installed: "
                   b"pip install 'cnncli[dask]'\n")


@pytest.mark.parametrize("args, flag", [(("--ship-bytes",), "--ship-bytes"),
                                        (("--connect-timeout", "3"), "--connect-timeout"),
                                        (("--scheduler", "tcp://127.0.0.1:1", "--workers", "2"), "--workers")])
def test_dask_options_without_a_cluster_are_refused(capsysbinary, folder, args, flag):
    """--ship-bytes and --connect-timeout need --scheduler; --workers sizes only a local cluster."""
    code, out, err = cnn(capsysbinary, "inspect", folder, "-k", "sobel_x", *args)
    assert (code, out) == (2, b"") and err.decode().startswith(f"cnn: Invalid value for {flag}: ")


def test_help_and_local_batches_do_not_import_dask(folder):
    """`cnn --help`, `cnn run --help` and a batch on this machine start without importing Dask."""
    for args in (["--help"], ["run", "--help"], ["run", str(folder), "-k", "sobel_x", "-f", "jsonl"]):
        script = ("import sys; from cnncli.cli import main; main(%r); "
                  "print(sorted(m for m in ('dask', 'distributed', 'cnncli.cluster') if m in sys.modules), "
                  "file=sys.stderr)" % args)
        done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
        assert done.stderr.splitlines()[-1] == "[]", (args, done.stderr)
