"""Datasets for a dataset run (``check --dataset PATH``): the samples of every net input, read batch by batch and
never as a whole.

Three kinds of ``PATH``:

* an ``.npy`` array ``(N, C, H, W)`` (a net with one input), memory-mapped;
* an ``.npz`` archive: one array per net input blob, keyed by the blob's name (a net with one input may use any one
  key), each ``(N, C, H, W)`` -- N samples of the net's per-sample input shape.  Members stored uncompressed
  (``np.savez``) are memory-mapped; compressed ones (``np.savez_compressed``) are read as a stream, one batch at a
  time, in order.
* a folder of ``.npy`` files (a net with one input): sorted by name, each one sample ``(C, H, W)`` or several
  ``(k, C, H, W)``; each file is memory-mapped when its batch is read.  A file of any other kind in the folder is
  refused by name.
* a folder of image files (or one image): each read and preprocessed as Caffe does (a
  :class:`harness.reference.preprocess.CaffeTransform`: OpenCV BGR 8-bit, TEST centre crop, mean, scale -- or
  pycaffe's Transformer) and as the Keras side does (``check --images``' rules: its leading preprocessing layers,
  ``--keras-preprocess``...), one batch at a time.

Every problem is a :class:`HarnessError` naming the file, the array key and both shapes.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np

from ...errors import HarnessError

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".pgm", ".pbm", ".tif", ".tiff", ".webp"})
IMAGES_NEED = ("images need --images preprocessing: Caffe's transform_param (--transform-prototxt FILE, default the "
               "checked prototxt's TEST data layer) or pycaffe's Transformer (--channel-swap, --raw-scale, --mean-file, "
               "--mean-value, --input-scale)")


@dataclass
class Source:
    """The samples of one net input: ``n`` samples of ``shape`` (per sample), read by ``read(start, stop)``
    (float32, ``(stop - start,) + shape``; ``sequential``: only in order, from where the last read ended)."""

    name: str  # the net input blob
    where: str  # file (and array key) for messages
    n: int
    shape: tuple[int, ...]
    read: Callable[[int, int], np.ndarray]
    sample_name: Callable[[int], str] = field(default=lambda i: "")
    sequential: bool = False
    close: Callable[[], None] = field(default=lambda: None)
    one: Callable[[int], np.ndarray] | None = None  # sample i alone, (1,) + shape (default: read(i, i + 1))
    # images: samples a:b as (Caffe's layer 0, the Keras side's layer 0), each file decoded once; and what they
    # were read with (files, CaffeTransform, KerasPreprocess, the net's H, W), for the layer-0 diagnosis
    read_pair: Callable[[int, int], tuple[np.ndarray, np.ndarray]] | None = None
    images: tuple[Any, ...] | None = None


class Dataset:
    """The sources of every net input (the same number of samples each)."""

    def __init__(self, path: str, kind: str, sources: dict[str, Source]) -> None:
        self.path, self.kind, self.sources = path, kind, sources
        self.n = next(iter(sources.values())).n

    def shapes(self) -> dict[str, tuple[int, ...]]:
        return {k: s.shape for k, s in self.sources.items()}

    def batches(self, batch: int) -> Iterator[tuple[int, dict[str, np.ndarray], dict[str, np.ndarray] | None]]:
        """``(start, {input: float32 array}, keras)`` for consecutive batches of ``batch`` samples (the last may be
        smaller); ``keras``: the Keras side's own layer 0 of an image dataset (``{input: array}``), else None."""
        for start in range(0, self.n, batch):
            stop = min(start + batch, self.n)
            arrays, keras = {}, {}
            for k, s in self.sources.items():
                if s.read_pair is not None:
                    arrays[k], keras[k] = s.read_pair(start, stop)
                else:
                    arrays[k] = s.read(start, stop)
            yield start, arrays, keras or None

    @property
    def images(self) -> tuple[Any, ...] | None:
        """(files, CaffeTransform, KerasPreprocess, input H, W) of an image dataset, else None."""
        return next(iter(self.sources.values())).images

    def sample(self, i: int) -> dict[str, np.ndarray]:
        """Sample ``i`` of every input, ``(1,) + shape`` (random access, also for a compressed archive)."""
        return {k: (s.one(i) if s.one is not None else s.read(i, i + 1)) for k, s in self.sources.items()}

    def sample_name(self, i: int) -> str:
        """What names sample ``i`` beyond its index (a folder's file name), or ""."""
        return next(iter(self.sources.values())).sample_name(i)

    def close(self) -> None:
        for s in self.sources.values():
            s.close()

    def __enter__(self) -> "Dataset":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def is_images(path: str) -> bool:
    """Whether ``path`` is an image dataset (an image file, or a folder whose files are all images)."""
    p = Path(path)
    if p.is_dir():
        files = [f for f in p.iterdir() if not f.name.startswith(".")]
        return bool(files) and all(f.suffix.lower() in IMAGE_SUFFIXES for f in files)
    return p.suffix.lower() in IMAGE_SUFFIXES


def open_dataset(path: str, inputs: Mapping[str, Sequence[int] | None], transform: Any = None,
                 keras_side: Any = None) -> Dataset:
    """The dataset at ``path`` for a net with ``inputs`` ``{blob: NCHW shape or None (sized by the data)}``; the
    per-sample shape of every array is checked against the net's.  ``transform``: the
    :class:`~harness.reference.preprocess.CaffeTransform` of an image dataset; ``keras_side``: its Keras side's
    preprocessing (:class:`harness.compare.layer0.preprocessing.KerasPreprocess`; None: both nets get Caffe's layer 0)."""
    p = Path(path)
    if p.is_dir():
        files = sorted(f for f in p.iterdir() if not f.name.startswith("."))
        if not files:
            raise HarnessError(f"--dataset {path!r}: the folder is empty (no samples)")
        if all(f.suffix.lower() in IMAGE_SUFFIXES for f in files):
            return _images(path, files, inputs, transform, keras_side)
        return _npy_folder(path, files, inputs)
    if not p.is_file():
        raise HarnessError(f"--dataset {path!r} does not exist")
    if p.suffix.lower() == ".npz":
        return _npz(path, inputs)
    if p.suffix.lower() == ".npy":
        return _npy_file(path, inputs)
    if p.suffix.lower() in IMAGE_SUFFIXES:
        return _images(path, [p], inputs, transform, keras_side)
    raise HarnessError(f"--dataset {path!r}: expected an .npz archive, an .npy array, a folder of .npy files or a "
                       f"folder of images (got a {p.suffix or 'suffix-less'} file)")


def _images(path: str, files: Sequence[Path], inputs: Mapping[str, Any], transform: Any, keras_side: Any) -> Dataset:
    """Image files through Caffe's preprocessing (and the Keras side's: :func:`harness.compare.layer0.preprocessing.layer0_batch`,
    the rules of ``check --images``), a batch at a time; the first image's result is checked against the net's input
    shape."""
    if transform is None:
        raise HarnessError(f"--dataset {path!r}: {IMAGES_NEED}")
    from ...reference.preprocess import load_batch

    name = _only_input(path, inputs, "a folder of images")
    want = inputs[name]
    hw = tuple(int(d) for d in want[2:]) if want is not None and len(want) == 4 else None
    paths = [str(f) for f in files]
    first = load_batch(paths[:1], transform, input_hw=hw)
    _check_shape(repr(str(files[0])), "image", tuple(first.shape), tuple(first.shape[1:]), name, want)
    pair = None
    if keras_side is not None:
        from ..layer0.preprocessing import layer0_batch

        def pair(a: int, b: int) -> tuple[np.ndarray, np.ndarray]:
            c, k = layer0_batch(paths[a:b], transform, keras_side, input_hw=hw)
            return np.asarray(c, np.float32), np.asarray(k, np.float32)

    return Dataset(path, "images", {name: Source(
        name, path, len(paths), tuple(first.shape[1:]),
        lambda a, b: np.asarray(load_batch(paths[a:b], transform, input_hw=hw), np.float32),
        sample_name=lambda i: Path(paths[i]).name, read_pair=pair, images=(paths, transform, keras_side, hw))})


def _only_input(path: str, inputs: Mapping[str, Any], what: str) -> str:
    if len(inputs) != 1:
        raise HarnessError(f"--dataset {path!r}: {what} feeds a net with one input; this net has {len(inputs)} "
                           f"({', '.join(inputs)}): give an .npz keyed by input name")
    return next(iter(inputs))


def _check_shape(where: str, key: str, arr_shape: tuple[int, ...], per_sample: tuple[int, ...], name: str,
                 want: Sequence[int] | None) -> None:
    if want is None:
        return
    want = tuple(int(d) for d in want)
    if per_sample != want[1:]:
        hint = ""
        if len(want) == 4 and per_sample == (want[2], want[3], want[1]):
            hint = " (the samples look NHWC: give them NCHW, x.transpose(0, 3, 1, 2))"
        raise HarnessError(f"--dataset {where}: array {key!r} has shape {arr_shape} (per sample {per_sample}), the "
                           f"net's input {name!r} takes {want[1:]} per sample (NCHW {want}){hint}")


def _check_dtype(where: str, key: str, dtype: np.dtype) -> None:
    if not (np.issubdtype(dtype, np.number) or dtype == np.bool_):
        raise HarnessError(f"--dataset {where}: array {key!r} has dtype {dtype}, expected a numeric array")


# ------------------------------------------------------------------------------------------------------------ npz

def _npz(path: str, inputs: Mapping[str, Sequence[int] | None]) -> Dataset:
    try:
        zf = zipfile.ZipFile(path)
        members = {n[:-4]: zf.getinfo(n) for n in zf.namelist() if n.endswith(".npy")}
    except (OSError, zipfile.BadZipFile) as e:
        raise HarnessError(f"--dataset {path!r}: cannot read it as an .npz archive ({type(e).__name__}: {e})") \
            from None
    if not members:
        zf.close()
        raise HarnessError(f"--dataset {path!r}: the archive holds no arrays (no samples)")
    keys = _npz_keys(path, list(members), inputs, zf)
    sources = {}
    try:
        for name, key in keys.items():
            sources[name] = _npz_member(path, zf, members[key], key, name, inputs[name])
        _same_n(path, sources)
    except BaseException:
        zf.close()
        raise
    closers = [s.close for s in sources.values()]

    def close() -> None:
        for c in closers:
            c()
        zf.close()

    for s in sources.values():
        s.close = lambda: None
    next(iter(sources.values())).close = close
    return Dataset(path, "npz", sources)


def _npz_keys(path: str, keys: list[str], inputs: Mapping[str, Any], zf: zipfile.ZipFile) -> dict[str, str]:
    """net input -> archive key."""
    if len(inputs) == 1 and len(keys) == 1:
        return {next(iter(inputs)): keys[0]}
    unknown = [k for k in keys if k not in inputs]
    missing = [n for n in inputs if n not in keys]
    if unknown or missing:
        zf.close()
        what = (f"array {unknown[0]!r} is not an input of the net" if unknown
                else f"no array for the net's input {missing[0]!r}")
        raise HarnessError(f"--dataset {path!r}: {what} (net inputs: {', '.join(inputs)}; archive keys: "
                           f"{', '.join(keys)})")
    return {n: n for n in inputs}


def _npz_member(path: str, zf: zipfile.ZipFile, info: zipfile.ZipInfo, key: str, name: str,
                want: Sequence[int] | None) -> Source:
    where = f"{path!r}"
    with zf.open(info) as f:
        shape, fortran, dtype = _npy_header(f, f"{path!r} array {key!r}")
        offset = f.tell()
    _check_dtype(where, key, dtype)
    if len(shape) < 1 or shape[0] == 0:
        raise HarnessError(f"--dataset {where}: array {key!r} has shape {shape}: no samples")
    _check_shape(where, key, shape, tuple(shape[1:]), name, want)
    if info.compress_type == zipfile.ZIP_STORED:
        data_at = _member_data_offset(path, info) + offset
        mm = np.memmap(path, dtype=dtype, mode="r", offset=data_at, shape=shape, order="F" if fortran else "C")
        return Source(name, f"{path} [{key}]", shape[0], tuple(shape[1:]),
                      lambda a, b: np.array(mm[a:b], dtype=np.float32))
    if fortran:
        raise HarnessError(f"--dataset {where}: array {key!r} is compressed and Fortran-ordered: it cannot be read "
                           f"one batch at a time; save it C-ordered (np.ascontiguousarray) or uncompressed (np.savez)")
    return _stream(path, zf, info, key, name, shape, dtype, offset)


def _stream(path: str, zf: zipfile.ZipFile, info: zipfile.ZipInfo, key: str, name: str, shape: tuple[int, ...],
            dtype: np.dtype, offset: int) -> Source:
    """A compressed member read in order, one batch at a time."""
    f = zf.open(info)
    f.read(offset)
    per = int(np.prod(shape[1:], dtype=np.int64)) * dtype.itemsize
    state = {"at": 0}

    def read(a: int, b: int) -> np.ndarray:
        if a != state["at"]:
            raise HarnessError(f"--dataset {path!r}: the compressed array {key!r} is read in order only")
        raw = f.read((b - a) * per)
        if len(raw) != (b - a) * per:
            raise HarnessError(f"--dataset {path!r}: array {key!r} ends after {a + len(raw) // per} of its "
                               f"{shape[0]} samples (truncated archive)")
        state["at"] = b
        return np.frombuffer(raw, dtype=dtype).reshape((b - a,) + tuple(shape[1:])).astype(np.float32)

    def one(i: int) -> np.ndarray:
        with zf.open(info) as g:
            g.read(offset + i * per)
            return np.frombuffer(g.read(per), dtype=dtype).reshape((1,) + tuple(shape[1:])).astype(np.float32)

    return Source(name, f"{path} [{key}]", shape[0], tuple(shape[1:]), read,
                  sequential=True, close=f.close, one=one)


def _npy_header(f: Any, what: str) -> tuple[tuple[int, ...], bool, np.dtype]:
    from numpy.lib import format as npformat

    try:
        version = npformat.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = npformat.read_array_header_1_0(f)
        else:
            shape, fortran, dtype = npformat.read_array_header_2_0(f)
    except (ValueError, OSError, EOFError) as e:
        raise HarnessError(f"--dataset {what}: not a NumPy array ({type(e).__name__}: {e})") from None
    if dtype.hasobject:
        raise HarnessError(f"--dataset {what}: holds Python objects (dtype {dtype}); expected a numeric array")
    return tuple(int(d) for d in shape), bool(fortran), dtype


def _member_data_offset(path: str, info: zipfile.ZipInfo) -> int:
    """Where a stored member's bytes start in the archive (after its local file header: PKZIP APPNOTE 4.3.7)."""
    with open(path, "rb") as f:
        f.seek(info.header_offset)
        head = f.read(30)
    if head[:4] != b"PK\x03\x04":
        raise HarnessError(f"--dataset {path!r}: bad local header for {info.filename!r}")
    name_len = int.from_bytes(head[26:28], "little")
    extra_len = int.from_bytes(head[28:30], "little")
    return info.header_offset + 30 + name_len + extra_len


def _same_n(path: str, sources: Mapping[str, Source]) -> None:
    ns = {k: s.n for k, s in sources.items()}
    if len(set(ns.values())) > 1:
        raise HarnessError(f"--dataset {path!r}: the inputs hold different numbers of samples "
                           f"({', '.join(f'{k}: {n}' for k, n in ns.items())})")


def _npy_file(path: str, inputs: Mapping[str, Sequence[int] | None]) -> Dataset:
    """One ``.npy`` of ``(N, C, H, W)`` for a net with one input, memory-mapped."""
    name = _only_input(path, inputs, "an .npy array")
    with open(path, "rb") as fh:
        shape, _, dtype = _npy_header(fh, repr(path))
    _check_dtype(repr(path), Path(path).name, dtype)
    if len(shape) < 1 or shape[0] == 0:
        raise HarnessError(f"--dataset {path!r}: array has shape {shape}: no samples")
    _check_shape(repr(path), Path(path).name, shape, tuple(shape[1:]), name, inputs[name])
    mm = np.load(path, mmap_mode="r", allow_pickle=False)
    return Dataset(path, "npy", {name: Source(name, path, shape[0], tuple(shape[1:]),
                                              lambda a, b: np.array(mm[a:b], dtype=np.float32))})


# ------------------------------------------------------------------------------------------------- folder of .npy

def _npy_folder(path: str, files: Sequence[Path], inputs: Mapping[str, Sequence[int] | None]) -> Dataset:
    for f in files:
        if f.suffix.lower() != ".npy" or not f.is_file():
            raise HarnessError(f"--dataset {path!r}: {f.name!r} is not an .npy file (a folder dataset holds only "
                               f".npy files, one sample (C, H, W) or several (k, C, H, W) each)")
    name = _only_input(path, inputs, "a folder of .npy files")
    want = inputs[name]
    counts, axis, per = [], [], None
    for f in files:
        with open(f, "rb") as fh:
            shape, _, dtype = _npy_header(fh, repr(str(f)))
        _check_dtype(repr(str(f)), f.name, dtype)
        rank = len(want) if want else 4  # a net sized by the data: NCHW samples
        has_axis = len(shape) == rank
        k, s = (shape[0], tuple(shape[1:])) if has_axis else (1, tuple(shape))
        if k == 0:
            raise HarnessError(f"--dataset {str(f)!r}: array has shape {shape}: no samples")
        _check_shape(repr(str(f)), f.name, shape, s, name, want)
        if per is not None and s != per:
            raise HarnessError(f"--dataset {str(f)!r}: samples of shape {s}, the folder's first file has {per}")
        per = s
        counts.append(k)
        axis.append(has_axis)
    ends = np.cumsum(counts)
    return Dataset(path, "npy-folder", {name: Source(name, path, int(ends[-1]), per, _folder_reader(files, ends, axis),
                                                     sample_name=_folder_names(files, ends))})


def _folder_reader(files: Sequence[Path], ends: np.ndarray, axis: Sequence[bool]) -> Callable[[int, int], np.ndarray]:
    """Samples ``a:b`` across the files (each memory-mapped while its part is copied)."""
    def read(a: int, b: int) -> np.ndarray:
        parts = []
        i = int(np.searchsorted(ends, a, side="right"))
        while a < b:
            begin = int(ends[i - 1]) if i else 0
            stop = min(b, int(ends[i]))
            arr = np.load(files[i], mmap_mode="r", allow_pickle=False)
            block = arr[a - begin: stop - begin] if axis[i] else arr[None]
            parts.append(np.array(block, dtype=np.float32))
            del arr
            a, i = stop, i + 1
        return np.concatenate(parts) if len(parts) > 1 else parts[0]

    return read


def _folder_names(files: Sequence[Path], ends: np.ndarray) -> Callable[[int], str]:
    def name(i: int) -> str:
        j = int(np.searchsorted(ends, i, side="right"))
        begin = int(ends[j - 1]) if j else 0
        count = int(ends[j]) - begin
        return files[j].name if count == 1 else f"{files[j].name}[{i - begin}]"

    return name
