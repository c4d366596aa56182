"""Makers of bad input files, built in the tests rather than committed as binaries."""

import io
import json
import pickle
import struct
import zipfile
import zlib

import numpy as np
from PIL import Image


def encode(image: Image.Image, format: str, **params) -> bytes:
    """The bytes of ``image`` saved in ``format``."""
    buffer = io.BytesIO()
    image.save(buffer, format, **params)
    return buffer.getvalue()


def png_claiming(width: int, height: int) -> bytes:
    """A 1x1 PNG whose IHDR is patched to claim width x height, with the chunk's CRC recomputed."""
    data = bytearray(encode(Image.new("L", (1, 1)), "PNG"))
    assert data[12:16] == b"IHDR"
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


def noise(size=(16, 16), mode="L", seed=0) -> Image.Image:
    """An image of random pixels, so that compressed files are not all-zero and truncation bites."""
    bands = len(Image.new(mode, (1, 1)).getbands())
    values = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], bands), dtype=np.uint8)
    return Image.fromarray(values.squeeze(-1) if bands == 1 else values[..., :3]).convert(mode)


def animated_gif(frames: int = 3) -> bytes:
    images = [noise(seed=i).convert("P") for i in range(frames)]
    return encode(images[0], "GIF", save_all=True, append_images=images[1:])


def npy_claiming(shape, descr: str = "<f8", data: bytes = bytes(16)) -> bytes:
    """A .npy whose header claims ``shape`` of ``descr`` but which holds only ``data``."""
    from numpy.lib import format as npy_format

    stream = io.BytesIO()
    npy_format.write_array_header_1_0(stream, {"descr": descr, "fortran_order": False, "shape": shape})
    return stream.getvalue() + data


def npy(array) -> bytes:
    stream = io.BytesIO()
    np.save(stream, np.asarray(array), allow_pickle=True)
    return stream.getvalue()


def pickled_npy() -> bytes:
    """A .npy of an object array: loading it with allow_pickle would run pickle."""
    return npy(np.array([{"a": 1}, None], dtype=object))


def npy_header(text: str) -> bytes:
    """A .npy whose header dictionary is ``text``, whatever it says, followed by 16 bytes."""
    header = text.encode("latin1")
    header += b" " * (-(10 + len(header) + 1) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header + bytes(16)


def gif_growing_frame(width: int = 0xFFFF, height: int = 0xFFFF) -> bytes:
    """A 1x1 GIF of 43 bytes whose one frame, disposed to the background, spans ``width`` x ``height``:
    Pillow grows the canvas to the frame inside Image.open (found by tests/fuzz)."""
    screen = b"GIF89a" + struct.pack("<HHBBB", 1, 1, 0x80, 0, 0) + bytes(3) + b"\xff\xff\xff"
    control = b"\x21\xf9\x04\x08\x00\x00\x00\x00"  # disposal method 2: restore to background
    frame = b"\x2c" + struct.pack("<HHHHB", 0, 0, width, height, 0) + b"\x02\x02\x44\x01\x00"
    return screen + control + frame + b"\x3b"


def npz(method: int = zipfile.ZIP_DEFLATED, **arrays) -> bytes:
    """A .npz of ``arrays``, compressed with ``method``; a bytes value is stored as the member's raw .npy content."""
    stream = io.BytesIO()
    with zipfile.ZipFile(stream, "w", method) as archive:
        for name, value in arrays.items():
            archive.writestr(f"{name}.npy", value if isinstance(value, bytes) else npy(value))
    return stream.getvalue()


def zip_bomb(name: str = "weight", size: int = 1 << 24) -> bytes:
    """A .npz of a few KiB whose one member inflates to ``size`` bytes."""
    return npz(**{name: npy_claiming((size // 8,), data=bytes(size))})


def pickle_bytes() -> bytes:
    return pickle.dumps({"weight": [1, 2]})


def model(layers, weights: str | None = None, size=(8, 8), **top) -> str:
    """The text of a cnn-model v1 file with ``layers``."""
    document = {"format": "cnn-model", "version": 1, "name": "bad", "input": {"size": list(size)}, "layers": layers}
    if weights is not None:
        document["weights"] = weights
    document.update(top)
    return json.dumps(document)


def conv(out_channels=1, kernel_size=3, in_channels=1, **settings) -> dict:
    """A conv2d layer with inline weights of the right shape (bias off), plus ``settings``."""
    weight = np.ones((out_channels, in_channels, kernel_size, kernel_size)).tolist()
    return {"type": "conv2d", "out_channels": out_channels, "kernel_size": kernel_size, "weight": weight,
            "bias": False, **settings}


ZIP_END = struct.Struct("<4s4H2IH")  # signature, disks, entries on this disk and in all, directory size and offset
ZIP64_END = struct.Struct("<4sQ2H2I4Q")
ZIP64_LOCATOR = struct.Struct("<4sIQI")


def zip_end(data: bytes) -> tuple[int, tuple]:
    """Where a zip's end of central directory record starts, and its fields."""
    end = data.rindex(b"PK\x05\x06")
    return end, ZIP_END.unpack_from(data, end)


def with_zip_end(data: bytes, entries: int | None = None, size: int | None = None, comment: bytes | None = None) -> bytes:
    """A zip whose end record claims ``entries`` and a directory of ``size`` bytes, and ends in ``comment``."""
    end, (sig, disk, disk_cd, on_disk, total, cd_size, cd_offset, comment_length) = zip_end(data)
    comment = data[end + ZIP_END.size:] if comment is None else comment
    record = ZIP_END.pack(sig, disk, disk_cd, on_disk if entries is None else entries,
                          total if entries is None else entries, cd_size if size is None else size, cd_offset,
                          len(comment))
    return data[:end] + record + comment


def with_zip64_end(data: bytes, entries: int | None = None, size: int | None = None, comment: bytes = b"") -> bytes:
    """A zip given a ZIP64 end record and locator before its end record, which then says 0xFFFF and
    0xFFFFFFFF ("see ZIP64"), as a zip of over 65,535 members has; the ZIP64 record claims ``entries``
    and ``size`` (by default the true ones), and the file ends in ``comment``."""
    end, (_, _, _, _, total, cd_size, cd_offset, _) = zip_end(data)
    record = ZIP64_END.pack(b"PK\x06\x06", 44, 45, 45, 0, 0, total if entries is None else entries,
                            total if entries is None else entries, cd_size if size is None else size, cd_offset)
    locator = ZIP64_LOCATOR.pack(b"PK\x06\x07", 0, end, 1)
    classic = ZIP_END.pack(b"PK\x05\x06", 0, 0, 0xFFFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF, len(comment))
    return data[:end] + record + locator + classic + comment


def zip_of_many_entries(count: int) -> bytes:
    """A real zip whose directory lists ``count`` entries (one stored, empty a.npy, listed again and again),
    with a ZIP64 end record when there are more than 65,535."""
    name = b"a.npy"
    local = struct.pack("<4s5H3I2H", b"PK\x03\x04", 20, 0, 0, 0, 0, 0, 0, 0, len(name), 0) + name
    entry = struct.pack("<4s6H3I5H2I", b"PK\x01\x02", 20, 20, 0, 0, 0, 0, 0, 0, 0, len(name), 0, 0, 0, 0, 0, 0) + name
    directory = entry * count
    listed = min(count, 0xFFFF)
    data = local + directory + ZIP_END.pack(b"PK\x05\x06", 0, 0, listed, listed, len(directory), len(local), 0)
    return with_zip64_end(data, entries=count) if count > 0xFFFF else data


def tiff_chain(frames: int, bigtiff: bool = False, order: str = "<", last_next: int = 0) -> bytes:
    """A TIFF of ``frames`` directories (IFDs), each a 1x1 8-bit gray image of value 128 sharing one
    strip, chained in order; the last one's next offset is ``last_next`` (0 ends the chain; the offset
    of an earlier directory makes a cycle: ``tiff_directory_offset(i, bigtiff)``)."""
    short, long_ = ("H", "Q") if bigtiff else ("H", "I")
    tags = [(256, 3, 1), (257, 3, 1), (258, 3, 8), (259, 3, 1), (262, 3, 1), (273, 4, None), (277, 3, 1),
            (278, 3, 1), (279, 4, 1)]  # sizes, 8 bits, no compression, black is zero, strip, 1 sample
    strip = tiff_directory_offset(frames, bigtiff)
    slot = 8 if bigtiff else 4
    entries = b"".join(struct.pack(order + ("HHQ" if bigtiff else "HHI"), tag, kind, 1)
                       + struct.pack(order + ("H" if kind == 3 else "I"), strip if value is None else value).ljust(slot, b"\0")
                       for tag, kind, value in tags)
    directory = struct.pack(order + (long_ if bigtiff else short), len(tags)) + entries
    if bigtiff:
        header = (b"II" if order == "<" else b"MM") + struct.pack(order + "HHHQ", 43, 8, 0, 16)
    else:
        header = (b"II" if order == "<" else b"MM") + struct.pack(order + "HI", 42, 8)
    link = struct.Struct(order + long_)
    chain = [directory + link.pack(tiff_directory_offset(i + 1, bigtiff)) for i in range(frames - 1)]
    return header + b"".join(chain) + directory + link.pack(last_next) + b"\x80"


def tiff_directory_offset(index: int, bigtiff: bool = False) -> int:
    """Where tiff_chain puts directory ``index`` (0 for the first)."""
    return 16 + index * (8 + 9 * 20 + 8) if bigtiff else 8 + index * (2 + 9 * 12 + 4)


def gif_of_frames(frames: int) -> bytes:
    """A 1x1 GIF of ``frames`` frames of 15 bytes each."""
    screen = b"GIF89a" + struct.pack("<HHBBB", 1, 1, 0x80, 0, 0) + bytes(3) + b"\xff\xff\xff"
    frame = b"\x2c" + struct.pack("<HHHHB", 0, 0, 1, 1, 0) + b"\x02\x02\x44\x01\x00"
    return screen + frame * frames + b"\x3b"
