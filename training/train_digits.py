"""Train the small digit classifier shipped as ``cnncli/models/digits.{json,npz}``.

Run from the repository root::

    python training/train_digits.py            # seed 0, writes into this repository
    python training/train_digits.py --seed 1 --out /tmp/digits-seed1

Data: scikit-learn's ``load_digits()`` (1,797 real 8x8 handwritten digits from the UCI
"Optical Recognition of Handwritten Digits" data set, CC BY 4.0, E. Alpaydin and C. Kaynak).
It ships inside scikit-learn, so nothing is downloaded.

The model's input rule is ``"fit": "ink"`` (cnncli/io/ink.py): ``cnn`` finds a picture's ink,
crops it, scales its longer side to the frame, centres it by its centre of mass and reduces it
to 8x8 by area averaging. The network is trained on exactly that (``fit_ink`` itself):

- each handwritten digit as the pixels of an 8-bit PNG with dark ink on white paper, fitted;
- the digits 0-9 printed in the URW base 35 fonts (pages.TRAINING_FONTS), likewise;
- and, for each of those, simulated photographs of a page (training/pages.py): the digit drawn
  as a 32x32 bitmap (a handwritten one redrawn from its counts, as the data set's bitmaps were
  before their blocks were counted), thickened or thinned, turned, slanted, stretched, in other
  proportions and bent, put anywhere on a page of any size at 25-95% of its height, dark on
  light or light on dark, on white or grey paper with uneven light, blurred and noisy; fitted.

Everything is deterministic for a given ``--seed`` (one CPU thread, deterministic torch
algorithms, seeded torch and NumPy generators, zip members with a fixed date): two runs
write byte-identical files with the same torch / NumPy / zlib / Pillow versions.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pages import SIZE, as_pixels, fitted, pages, printed_digits  # noqa: E402

from cnncli.io.input_rule import LOW_CONFIDENCE  # noqa: E402  (pages put the repository on the path)

REPO_ROOT = Path(__file__).resolve().parent.parent

HELD_OUT_FRACTION = 0.2
EPOCHS = 120
BATCH_SIZE = 64
LEARNING_RATE = 3e-3
WEIGHT_DECAY = 1e-4
PAGES_PER_DIGIT = 16  # simulated photographs made of each training digit, once, before training
CLEAN_SHARE = 0.25  # chance that a digit is given as its own 8x8 PNG (fitted) rather than one of its pages

HELD_OUT_PAGES = 4  # simulated photographs of each held-out digit, for the accuracy on pages

DESCRIPTION = (
    "Digit classifier: two conv stages and two dense layers, trained on scikit-learn's 8x8 digits (real "
    "handwriting, UCI, CC BY 4.0) and digits printed in the URW base fonts, on simulated photographs of pages; "
    "a picture's ink is fitted to 8x8 as the data set's digits were."
)
DATASET = "scikit-learn load_digits (UCI Optical Recognition of Handwritten Digits, CC BY 4.0)"
PRINTED = "digits 0-9 in the URW base 35 fonts (fonts-urw-base35, AGPL-3.0 with a font exception), 32x32"
ZIP_DATE = (1980, 1, 1, 0, 0, 0)  # the earliest date a zip can hold; keeps archives byte-identical


class DigitsNet(nn.Module):
    """conv-bn-relu-pool twice, then dropout and two dense layers; returns logits.

    ``forward`` runs the child modules in the order they are registered, and the model JSON's
    ``layers`` list is generated from the same children (see ``layer_specs``), so the two cannot
    drift apart. The ReLU, flatten and dropout modules hold no parameters, so the state_dict
    keys are only those of conv1, bn1, conv2, bn2, fc1 and fc2.
    """

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(16)
        self.relu1 = nn.ReLU()
        self.pool1 = nn.MaxPool2d(2)  # 16 x 4 x 4
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(32)
        self.relu2 = nn.ReLU()
        self.pool2 = nn.MaxPool2d(2)  # 32 x 2 x 2
        self.flatten = nn.Flatten(1)  # torch.flatten(x, 1): C, H, W order -> 128
        self.dropout = nn.Dropout(0.25)
        self.fc1 = nn.Linear(128, 64)
        self.relu3 = nn.ReLU()
        self.fc2 = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.children():
            x = layer(x)
        return x


def _pair(value: int | tuple[int, ...]) -> list[int]:
    return [value, value] if isinstance(value, int) else list(value)


def _single(value: int | tuple[int, ...], what: str) -> int:
    pair = _pair(value)
    if pair[0] != pair[1]:
        raise ValueError(f"{what} {value} is not the same in both directions")
    return pair[0]


def layer_specs(model: nn.Module) -> list[dict]:
    """The model JSON's ``layers`` list, read from the module's children, plus a final softmax."""
    specs: list[dict] = []
    for name, layer in model.named_children():
        if isinstance(layer, nn.Conv2d):
            if (_pair(layer.stride) != [1, 1] or _pair(layer.dilation) != [1, 1] or layer.groups != 1
                    or layer.bias is None or layer.padding_mode != "zeros"):
                raise ValueError(f"{name}: only plain stride-1 zero-padded convolutions with bias are exported")
            specs.append({"name": name, "type": "conv2d", "out_channels": layer.out_channels,
                          "kernel_size": _pair(layer.kernel_size),
                          "padding": _single(layer.padding, f"{name} padding")})
        elif isinstance(layer, nn.BatchNorm2d):
            if not (layer.affine and layer.track_running_stats):
                raise ValueError(f"{name}: batch norm needs affine weights and running statistics")
            specs.append({"name": name, "type": "batchnorm2d", "eps": layer.eps})
        elif isinstance(layer, nn.ReLU):
            specs.append({"name": name, "type": "relu"})
        elif isinstance(layer, nn.MaxPool2d):
            if (_pair(layer.stride) != _pair(layer.kernel_size) or _pair(layer.padding) != [0, 0]
                    or _pair(layer.dilation) != [1, 1] or layer.ceil_mode):
                raise ValueError(f"{name}: only plain non-overlapping max pooling is exported")
            specs.append({"name": name, "type": "maxpool2d", "kernel_size": _pair(layer.kernel_size)})
        elif isinstance(layer, nn.Flatten):
            if layer.start_dim != 1 or layer.end_dim != -1:
                raise ValueError(f"{name}: only flatten from dimension 1 is exported")
            specs.append({"name": name, "type": "flatten"})
        elif isinstance(layer, nn.Dropout):
            specs.append({"name": name, "type": "dropout", "p": layer.p})
        elif isinstance(layer, nn.Linear):
            if layer.bias is None:
                raise ValueError(f"{name}: dense layers need a bias")
            specs.append({"name": name, "type": "dense", "out_features": layer.out_features})
        else:
            raise TypeError(f"{name}: no JSON layer type for {type(layer).__name__}")
    specs.append({"name": "softmax", "type": "softmax"})
    return specs


# --------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------


def load_data() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(pixels uint8 (N, 8, 8) ink-on-white, inputs float32 (N, 1, 8, 8), labels int64 (N,)).

    ``inputs`` are what cnn computes from the pixels saved as a PNG, for this model (``fitted``:
    read in unit scale, then ``fit_ink``), so ink is high."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = np.asarray(digits.images)  # float64, 0..16, ink high
    pixels = 255 - np.round(images * 255 / 16).astype(np.uint8)
    labels = np.asarray(digits.target, dtype=np.int64)
    return pixels, fitted(pixels), labels


def stratified_split(labels: np.ndarray, rng: np.random.Generator,
                     fraction: float = HELD_OUT_FRACTION) -> tuple[np.ndarray, np.ndarray]:
    """(train indices, held-out indices), both ascending; ``fraction`` of each class is held out."""
    held: list[np.ndarray] = []
    for cls in range(10):
        members = np.flatnonzero(labels == cls)
        count = int(np.floor(len(members) * fraction + 0.5))
        held.append(rng.permutation(members)[:count])
    held_out = np.sort(np.concatenate(held)).astype(np.int64)
    train = np.setdiff1d(np.arange(len(labels)), held_out).astype(np.int64)
    return train, held_out


# --------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------


def to_tensor(x: np.ndarray) -> torch.Tensor:
    """A float32 (N, 1, H, W) tensor with standard contiguous strides.

    With one channel, the channel stride does not matter for the data, but torch reads a stride
    of 1 there (as NumPy gives for ``a[:, None]`` or ``a[idx]`` of such a view) as channels-last
    and then picks other convolution kernels, whose float32 results differ in the last bits.
    Fixing the strides keeps training and the stored logits identical to what
    ``torch.from_numpy(np.load(...)["inputs"])`` gives.
    """
    return torch.from_numpy(x).clone(memory_format=torch.contiguous_format)


def set_determinism(seed: int) -> None:
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)


def train(x: np.ndarray, paged: np.ndarray, y: np.ndarray, seed: int, epochs: int = EPOCHS) -> DigitsNet:
    """Train a fresh DigitsNet on labels ``y``: each time an image is used, its own fitted input
    from ``x`` (N, 1, 8, 8) with probability CLEAN_SHARE, else one of its pages from ``paged``
    (N, pages, 1, 8, 8), chosen at random."""
    set_determinism(seed)
    rng = np.random.default_rng([seed, 1])  # batches and choices; the split uses [seed, 0], the pages [seed, 2]
    model = DigitsNet()
    optimizer = torch.optim.AdamW(model.parameters(), lr=LEARNING_RATE, weight_decay=WEIGHT_DECAY)
    steps_per_epoch = -(-len(x) // BATCH_SIZE)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=LEARNING_RATE, epochs=epochs,
                                                    steps_per_epoch=steps_per_epoch)
    loss_fn = nn.CrossEntropyLoss()
    labels = torch.from_numpy(y)
    for _ in range(epochs):
        model.train()
        order = rng.permutation(len(x))
        if len(x) % BATCH_SIZE == 1:  # never leave a batch of one (batch norm needs two)
            order = order[:-1]
        for start in range(0, len(order), BATCH_SIZE):
            batch = order[start:start + BATCH_SIZE]
            page = rng.integers(0, paged.shape[1], len(batch))
            clean = rng.random(len(batch)) < CLEAN_SHARE
            xb = np.where(clean[:, None, None, None], x[batch], paged[batch, page])  # B, 1, 8, 8
            optimizer.zero_grad()
            loss = loss_fn(model(to_tensor(np.ascontiguousarray(xb))), labels[batch])
            loss.backward()
            optimizer.step()
            scheduler.step()
    model.eval()
    return model


def predict(model: nn.Module, x: np.ndarray) -> np.ndarray:
    """Eval-mode logits (float32) for inputs ``x``, in one batch."""
    model.eval()
    with torch.no_grad():
        return model(to_tensor(x)).numpy().astype(np.float32, copy=False)


# --------------------------------------------------------------------------
# Export
# --------------------------------------------------------------------------


def pin_zip_dates(path: Path) -> None:
    """Rewrite a zip (an .npz) with every member dated ZIP_DATE, so that reruns are byte-identical.

    NumPy stamps each member with the current time; nothing else about the archive changes:
    the members, their bytes and their compression stay the same.
    """
    with zipfile.ZipFile(path) as src:
        members = [(info, src.read(info)) for info in src.infolist()]
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as dst:
        for info, data in members:
            pinned = zipfile.ZipInfo(info.filename, date_time=ZIP_DATE)
            pinned.compress_type = info.compress_type
            pinned.external_attr = info.external_attr
            dst.writestr(pinned, data)
    path.write_bytes(buffer.getvalue())


def export(model: DigitsNet, out: Path, seed: int, pixels: np.ndarray, inputs: np.ndarray,
           labels: np.ndarray, train_idx: np.ndarray, held_idx: np.ndarray, facts: dict) -> dict:
    """Write the weights, the model file (with ``facts`` about the training in its metadata), the
    held-out set and the sample PNGs; return the held-out accuracy and predictions."""
    from PIL import Image

    model.eval()
    models_dir = out / "cnncli" / "models"
    data_dir = out / "tests" / "data"
    samples_dir = out / "sample_images"
    for folder in (models_dir, data_dir, samples_dir):
        folder.mkdir(parents=True, exist_ok=True)

    # a) the weights: a plain PyTorch state_dict (including bn*.num_batches_tracked).
    weights_path = models_dir / "digits.npz"
    np.savez(weights_path, **{k: v.detach().cpu().numpy() for k, v in model.state_dict().items()})
    pin_zip_dates(weights_path)

    # c) the held-out set, with the torch logits as the reference for cnn's own engine.
    held_inputs = np.ascontiguousarray(inputs[held_idx])
    held_labels = labels[held_idx]
    logits = predict(model, held_inputs)
    predicted = logits.argmax(axis=1)
    accuracy = float(np.mean(predicted == held_labels))
    heldout_path = data_dir / "digits_heldout.npz"
    np.savez_compressed(
        heldout_path,
        pixels=np.ascontiguousarray(pixels[held_idx], dtype=np.uint8),
        labels=held_labels.astype(np.int64),
        inputs=held_inputs.astype(np.float32),
        logits=logits.astype(np.float32),
        indices=held_idx.astype(np.int64),
    )
    pin_zip_dates(heldout_path)

    # b) the model description read by cnn.
    spec = {
        "format": "cnn-model",
        "version": 1,
        "name": "digits",
        "description": DESCRIPTION,
        "input": {"size": [8, 8], "color": "gray", "scale": "unit", "fit": "ink", "invert": "auto",
                  "mean": [0.0], "std": [1.0]},
        "labels": [str(i) for i in range(10)],
        "weights": weights_path.name,
        "layers": layer_specs(model),
        "metadata": {
            "dataset": DATASET,
            "printed": PRINTED,
            "train_samples": len(train_idx),
            "printed_samples": facts["printed_samples"],
            "pages_per_sample": PAGES_PER_DIGIT,
            "held_out_samples": len(held_idx),
            "held_out_accuracy": round(accuracy, 4),
            "held_out_pages_accuracy": round(facts["held_out_pages_accuracy"], 4),
            "seed": seed,
            "trained_with": f"torch {torch.__version__}",
            "script": "training/train_digits.py",
        },
    }
    with open(models_dir / "digits.json", "w", encoding="utf-8") as fh:
        json.dump(spec, fh, indent=2)
        fh.write("\n")

    # d) one correctly classified held-out image per class, as an 8x8 ink-on-white PNG.
    samples = {}
    for cls in range(10):
        hits = np.flatnonzero((held_labels == cls) & (predicted == cls))
        if len(hits) == 0:
            raise RuntimeError(f"no held-out {cls} is classified correctly")
        position = int(hits[0])
        image = Image.fromarray(np.ascontiguousarray(pixels[held_idx[position]], dtype=np.uint8))
        assert image.mode == "L" and image.size == (8, 8)
        image.save(samples_dir / f"digit_{cls}.png", format="PNG", optimize=True)
        samples[cls] = int(held_idx[position])

    return {"accuracy": accuracy, "predicted": predicted, "held_labels": held_labels,
            "samples": samples, **facts}


def report(result: dict, n_train: int, n_held: int, seed: int, elapsed: float) -> None:
    y, p = result["held_labels"], result["predicted"]
    print(f"seed {seed}: {n_train} handwritten and {result['printed_samples']} printed training images, "
          f"{PAGES_PER_DIGIT} pages each; {n_held} held out")
    print(f"held-out accuracy: {result['accuracy']:.4f} ({int(np.sum(y == p))}/{len(y)})")
    print(f"held-out accuracy on simulated pages: {result['held_out_pages_accuracy']:.4f}; a low-confidence note "
          f"(under {LOW_CONFIDENCE:.0%}) for {result['doubted'][0]:.1%} of the wrong answers and "
          f"{result['doubted'][1]:.1%} of the right ones")
    per_class = "  ".join(f"{c}:{np.mean(p[y == c] == c):.3f}" for c in range(10))
    print(f"per class: {per_class}")
    errors: dict[tuple[int, int], int] = {}
    for t, q in zip(y.tolist(), p.tolist()):
        if t != q:
            errors[(t, q)] = errors.get((t, q), 0) + 1
    if errors:
        listed = ", ".join(f"{t}->{q} x{n}" for (t, q), n in sorted(errors.items()))
        print(f"errors (true->predicted): {listed}")
    else:
        print("errors: none")
    samples = ", ".join(f"{c}:#{i}" for c, i in result["samples"].items())
    print(f"sample PNGs (load_digits index): {samples}")
    print(f"elapsed: {elapsed:.1f} s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=0, help="seed for the split, the weights and training (default 0)")
    parser.add_argument("--out", type=Path, default=REPO_ROOT,
                        help="root to write cnncli/models/, tests/data/ and sample_images/ under "
                             "(default: this repository)")
    args = parser.parse_args(argv)

    started = time.perf_counter()
    set_determinism(args.seed)
    pixels, inputs, labels = load_data()
    train_idx, held_idx = stratified_split(labels, np.random.default_rng([args.seed, 0]))
    printed, printed_labels, _ = printed_digits()
    # Handwritten digits redraw their bitmap for each page; printed ones are their bitmap.
    digits = [*pixels[train_idx], *printed]
    x = np.concatenate([inputs[train_idx], fitted(as_pixels(printed))])
    y = np.concatenate([labels[train_idx], printed_labels])
    paged = pages(digits, np.random.default_rng([args.seed, 2]), PAGES_PER_DIGIT)
    model = train(x, paged, y, args.seed)
    held_pages = pages(list(pixels[held_idx]), np.random.default_rng([args.seed, 3]), HELD_OUT_PAGES)
    page_logits = predict(model, held_pages.reshape(-1, 1, *SIZE))
    right = page_logits.argmax(axis=1) == np.repeat(labels[held_idx], HELD_OUT_PAGES)
    confident = torch.softmax(torch.from_numpy(page_logits), dim=1).numpy().max(axis=1) >= LOW_CONFIDENCE
    facts = {"printed_samples": len(printed), "held_out_pages_accuracy": float(np.mean(right)),
             "doubted": (float(np.mean(~confident[~right])), float(np.mean(~confident[right])))}
    result = export(model, args.out, args.seed, pixels, inputs, labels, train_idx, held_idx, facts)
    report(result, len(train_idx), len(held_idx), args.seed, time.perf_counter() - started)
    return 0

if __name__ == "__main__":
    sys.exit(main())
