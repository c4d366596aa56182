"""ImageNet-size networks through cnn's engine, side by side with ONNX Runtime (issue 12).

Run from the repository root with the test extra installed (it has onnx and onnxruntime):

    python benchmarks/bench_onnx.py                        # ResNet-50, MobileNetV2, VGG-16; 2 threads
    python benchmarks/bench_onnx.py --models resnet50 --threads 1 --repeat 20
    python benchmarks/bench_onnx.py --layers               # where cnn's time goes, by layer type
    python benchmarks/bench_onnx.py --floor                # what bare matrix products of the same shapes take

The networks are torchvision's, exported by PyTorch (benchmarks/zoo, made by
tests/fixtures/make_zoo.py without their weights); tests/zoo_models.py draws seeded weights with
each tensor's recorded statistics, and the full files (100 to 550 MB) are written to a temporary
folder for the run, never committed.

Each side runs in its own fresh process (one engine's threads must not spin while the other is
timed), alternately for ``--rounds`` rounds, with the same thread count (OpenBLAS's threads through
the environment; ONNX Runtime's intra-op threads). A time is the best of ``--repeat`` calls after
one warm-up call, one 224x224 image:

- cnn: ``Network.forward``, which keeps every intermediate map, as ``cnn run`` and ``cnn inspect`` do,
  with freed memory kept for reuse as a batch of `cnn run` keeps it from its second image on
  (cnncli/engine/allocator.py), the timed calls being repeated forwards;
- ONNX Runtime: ``InferenceSession.run`` with its default optimisations (fusions on), the model's output;
- ``--maps``: also ONNX Runtime with every node's output made a graph output, so that it too hands
  back every intermediate map (its fusions then keep each node whose output is asked for).

Targets (issue 12): ResNet-50 within 1.5x, MobileNetV2 within 2x, VGG-16 within 1.2x. The outputs
must agree within 1e-4 of the largest logit's magnitude.

``--floor`` times also, in a third process, the least that any im2col engine on NumPy must spend:
every conv and dense layer's matrix products as bare ``np.matmul`` calls of the same shapes, with the
layer's own weights, one after the other in the network's order, (F/groups, C/groups*KH*KW) @
(C/groups*KH*KW, H_out*W_out), the right-hand side ready (no im2col copy), no bias; and, apart, one
write of every other map the forward keeps (activations, merges, pools; depthwise convs, which make
no product). A floor above a target means that target is out of reach of this approach.

``--memory`` measures instead the peak resident memory of whole `cnn run` processes on a photo with
``--preset imagenet``, above that of a process that only imports what `cnn` imports: writing only
the output (``-o out.npy``: maps let go after their last reader) and keeping every map (``-f npz``).
Target (issue 12): at most 1.25 x (the weights + the maps kept): for ``-o out.npy``, the maps alive at
once (each let go after its last reader).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TARGETS = {"resnet50": 1.5, "mobilenet_v2": 2.0, "vgg16": 1.2}
TOLERANCE = 1e-4


def worker(engine: str, path: str, repeat: int, threads: int, out: str, layers: bool) -> None:
    """Time one engine on one model; print a JSON line; save the output for the comparison."""
    import numpy as np

    x = np.random.default_rng(0).random((1, 3, 224, 224), dtype=np.float32)
    if engine == "floor":
        sys.path.insert(0, str(REPO))
        from cnncli.engine.allocator import keep_freed_memory
        from cnncli.io.modelfile import load_model

        keep_freed_memory()  # new arrays reuse freed memory, as in cnn's own timed forwards

        print(json.dumps(floor(load_model(path).network, x[0], repeat)))
        return
    if engine == "cnn":
        sys.path.insert(0, str(REPO))
        from cnncli.engine.allocator import keep_freed_memory
        from cnncli.io.modelfile import load_model

        keep_freed_memory()  # as a batch of `cnn run` does from its second image of this size on
        network = load_model(path).network
        run = lambda: network.forward(x[0])[-1].output  # noqa: E731
    else:
        import onnxruntime as ort

        if engine == "ort-maps":  # every node's output a graph output: ONNX Runtime keeps every map too
            import onnx

            model = onnx.load(path)
            outputs = {o.name for o in model.graph.output}
            model.graph.output.extend(onnx.helper.make_empty_tensor_value_info(name) for node in model.graph.node
                                      for name in node.output if name and name not in outputs)
            path = model.SerializeToString()
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        run = lambda: session.run(None, {name: x})[0][0]  # noqa: E731
    output = run()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    np.save(out, np.asarray(output, dtype=np.float32))
    report = {"best": min(times), "median": sorted(times)[len(times) // 2]}
    if layers and engine == "cnn":
        report["layers"] = time_layers(network, x[0])
    print(json.dumps(report))


def floor(network, x, repeat: int) -> dict[str, float]:
    """Seconds of the bare products of every conv and dense layer, one after the other in the network's
    order as a forward makes them (each layer's weights read from memory, each output a new array),
    and of one write of every other kept map (activations, merges, pools, depthwise convs); the best
    of ``repeat`` passes."""
    import numpy as np

    rng = np.random.default_rng(0)
    products, maps = [], []
    for step in network.forward(x):
        layer = step.layer
        if layer is None:
            continue
        if step.type == "conv2d" and layer.weight.shape[1] > 1:
            groups = layer.groups
            weights = layer.weight.reshape(groups, layer.weight.shape[0] // groups, -1)  # groups, F/g, C/g*KH*KW
            cells = math.prod(step.output.shape[1:])
            products += [(w, rng.random((w.shape[1], cells), dtype=np.float32)) for w in weights]
        elif step.type == "dense":
            products.append((layer.weight, rng.random((layer.weight.shape[1], 1), dtype=np.float32)))
        else:  # a map no product writes
            maps.append(step.output)

    def best(run) -> float:
        times = []
        for _ in range(repeat):
            start = time.perf_counter()
            run()
            times.append(time.perf_counter() - start)
        return min(times)

    return {"products": best(lambda: [np.matmul(w, b) for w, b in products]),
            "writes": best(lambda: [m.copy() for m in maps])}


def time_layers(network, x) -> dict[str, float]:
    """Seconds per layer type in one traced forward (the best of 3)."""
    best: dict[str, float] = {}
    for _ in range(3):
        totals: dict[str, float] = {}
        for step in network.forward(x):
            if step.layer is not None:
                totals[step.layer.type] = totals.get(step.layer.type, 0.0) + step.seconds
        best = {k: min(v, best.get(k, v)) for k, v in totals.items()}
    return dict(sorted(best.items(), key=lambda item: -item[1]))


def spawn(engine: str, path: Path, args: argparse.Namespace, out: Path) -> dict:
    env = dict(os.environ, OPENBLAS_NUM_THREADS=str(args.threads), OMP_NUM_THREADS=str(args.threads),
               MKL_NUM_THREADS=str(args.threads))
    command = [sys.executable, __file__, "--worker", engine, str(path), "--repeat", str(args.repeat),
               "--threads", str(args.threads), "--out", str(out)] + (["--layers"] if args.layers else [])
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode:
        sys.exit(f"{engine} on {path.name} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


PEAK = ("import resource, subprocess, sys; done = subprocess.run(sys.argv[1:], capture_output=True); "
        "print(done.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")


def peak_rss(command: list[str]) -> int:
    """The peak resident memory of ``command``, in bytes (measured by a parent of its own)."""
    done = subprocess.run([sys.executable, "-c", PEAK, *command], capture_output=True, text=True, check=True)
    code, kilobytes = done.stdout.split()
    if code != "0":
        sys.exit(f"{' '.join(command)} failed with {code}")
    return int(kilobytes) * 1024


def memory(name: str, path: Path, folder: str) -> None:
    import numpy as np

    sys.path.insert(0, str(REPO))
    from cnncli.io.modelfile import load_model

    model = load_model(str(path))
    photo = str(REPO / "sample_images" / "photo_chelsea.jpg")
    weights = sum(a.nbytes for layer in model.network.layers for a in vars(layer).values() if isinstance(a, np.ndarray))
    shapes = model.network.shapes((3, 224, 224))
    maps = sum(4 * int(np.prod(shape)) for shape in shapes)
    alive = held = 4 * int(np.prod(shapes[0]))  # the most maps held at once when each goes after its last reader
    for index, shape in enumerate(shapes[1:], start=1):
        held += 4 * int(np.prod(shape))
        alive = max(alive, held)
        held -= sum(4 * int(np.prod(shapes[p])) for p in model.network._last_reads.get(index, ()))
    cnn = [sys.executable, "-m", "cnncli"]
    base = peak_rss([sys.executable, "-c", "import numpy, PIL.Image, typer, rich, onnx; import cnncli.cli, "
                                           "cnncli.io.onnx_import.build, cnncli.engine.graph"])
    lean = peak_rss([*cnn, "run", photo, "--model", str(path), "--preset", "imagenet", "-o", f"{folder}/out.npy",
                     "--force"]) - base
    full = peak_rss([*cnn, "run", photo, "--model", str(path), "--preset", "imagenet", "-f", "npz", "-o",
                     f"{folder}/all.npz", "--force"]) - base
    mb = 1 << 20
    print(f"{name:14s} weights {weights / mb:6.1f} MiB, maps {maps / mb:6.1f} MiB, imports {base / mb:5.1f} MiB; "
          f"-o out.npy {lean / mb:6.1f} MiB = {lean / weights:.2f} x weights, "
          f"{lean / (weights + alive):.2f} x (weights + {alive / mb:.1f} MiB of maps alive at once); "
          f"-f npz {full / mb:6.1f} MiB = {full / (weights + maps):.2f} x (weights + maps) (target 1.25)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default=",".join(TARGETS))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--layers", action="store_true")
    parser.add_argument("--memory", action="store_true", help="peak memory of cnn run instead of speed")
    parser.add_argument("--floor", action="store_true", help="also time bare products of the same shapes")
    parser.add_argument("--maps", action="store_true", help="also time ONNX Runtime returning every map")
    parser.add_argument("--worker", nargs=2, metavar=("ENGINE", "MODEL"))
    parser.add_argument("--out")
    args = parser.parse_args()
    if args.worker:
        worker(args.worker[0], args.worker[1], args.repeat, args.threads, args.out, args.layers)
        return
    import numpy as np

    sys.path.insert(0, str(REPO / "tests"))
    from zoo_models import BENCHMARKED, inflate

    if not args.memory:
        print(f"{args.threads} thread(s), best of {args.repeat}, {args.rounds} rounds per side, 224x224")
    with tempfile.TemporaryDirectory() as folder:
        for name in args.models.split(","):
            path = Path(folder) / f"{name}.onnx"
            path.write_bytes(inflate(BENCHMARKED / f"{name}.onnx").SerializeToString())
            if args.memory:
                memory(name, path, folder)
                path.unlink()
                continue
            engines = ["cnn", "ort"] + (["ort-maps"] if args.maps else []) + (["floor"] if args.floor else [])
            best: dict[str, list] = {engine: [] for engine in engines}
            last: dict = {}
            for _ in range(args.rounds):  # every engine once a round, so that a slow spell of the machine hits all
                for engine in engines:
                    last[engine] = spawn(engine, path, args, Path(folder) / f"{engine}.npy")
                    best[engine].append(last[engine] if engine == "floor" else last[engine]["best"])
            ours, theirs = np.load(Path(folder) / "cnn.npy"), np.load(Path(folder) / "ort.npy")
            error = float(np.abs(ours - theirs).max() / np.abs(theirs).max())
            cnn, ort = min(best["cnn"]), min(best["ort"])
            target = TARGETS.get(name)
            verdict = "outputs differ" if error > TOLERANCE else (
                "" if target is None else ("met" if cnn / ort <= target else "NOT MET"))
            rounds = {engine: ", ".join(f"{t * 1e3:.1f}" for t in times) for engine, times in best.items()
                      if engine != "floor"}
            print(f"{name:14s} cnn {cnn * 1e3:7.1f} ms ({rounds['cnn']})   ORT {ort * 1e3:7.1f} ms ({rounds['ort']})   "
                  f"{cnn / ort:.2f}x (target {target}x) {verdict}   max diff {error:.1e}")
            if args.layers:
                print("   " + ", ".join(f"{k} {v * 1e3:.1f}" for k, v in last["cnn"]["layers"].items()))
            if args.maps:
                kept = min(best["ort-maps"])
                print(f"   ONNX Runtime returning every map: {kept * 1e3:.1f} ms ({rounds['ort-maps']}); "
                      f"cnn is {cnn / kept:.2f}x that")
            if args.floor:
                low = {part: min(report[part] for report in best["floor"]) for part in ("products", "writes")}
                print(f"   floor: products {low['products'] * 1e3:.1f} ms = {low['products'] / ort:.2f}x ORT; "
                      f"with one write of each other kept map {(low['products'] + low['writes']) * 1e3:.1f} ms = "
                      f"{(low['products'] + low['writes']) / ort:.2f}x ORT")
            path.unlink()


if __name__ == "__main__":
    main()
