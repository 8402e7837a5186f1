"""Caffe's preprocessing as a reference "layer 0": image files -> the net's NCHW input, as Caffe computes it.

Two routes, each Caffe's own rules (quoted where implemented):

* ``"data_transformer"`` -- what a Data / ImageData layer does at TEST phase: ``io.cpp`` ``ReadImageToCVMat`` (OpenCV,
  BGR, 8-bit; ImageData's ``new_height``/``new_width`` resize with ``cv::resize``'s default ``INTER_LINEAR``), then
  ``data_transformer.cpp`` ``DataTransformer::Transform(const cv::Mat&, Blob*)``: TEST centre crop, ``(x - mean) *
  scale`` with the mean image cropped at the same offsets, or one mean value per channel.
* ``"pycaffe"`` -- ``python/caffe/io.py`` ``Transformer.preprocess`` on ``caffe.io.load_image``'s RGB float image in
  [0, 1]: transpose HWC -> CHW, ``channel_swap``, ``*= raw_scale``, ``-= mean``, ``*= input_scale`` (in that order).

The public API (used by ``check --images`` and by the dataset runner):

* :class:`CaffeTransform` -- the frozen description, built :meth:`CaffeTransform.from_prototxt` (a train_val's data
  layer) or :meth:`CaffeTransform.from_pycaffe`;
* :func:`read_image` -- one file as Caffe reads it (uint8 HWC BGR, or HW1 grey);
* :func:`caffe_preprocess` -- a list of such images -> float32 NCHW;
* :func:`load_batch` -- image paths -> float32 NCHW (read + preprocess, every problem named by file): the one call
  a dataset runner needs (``load_batch(paths, CaffeTransform.from_prototxt(train_val), input_hw=(H, W))``);
* :func:`read_originals` / :func:`caffe_layer0` -- the same in two steps (decode once, preprocess many ways);
* :func:`read_mean_binaryproto` -- a ``.binaryproto`` mean file -> (C, H, W) float32;
* :func:`image_files` -- ``DIR`` or ``GLOB`` -> the sorted image paths.

OpenCV (``cv2``) is an optional dependency (the ``images`` extra); every entry point that needs it refuses by name
with the install hint when it is missing.
"""

from __future__ import annotations

import glob as _glob
import os
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from ..errors import HarnessError, LoadWarning, UnsupportedParam

__all__ = ["CaffeTransform", "ImageError", "IMAGE_SUFFIXES", "caffe_layer0", "caffe_preprocess", "caffe_resize",
           "image_files", "load_batch", "read_image", "read_mean_binaryproto", "read_mean_file", "read_originals",
           "keras_pixels", "pycaffe_set_mean", "read_rgb", "require_cv2", "skimage_resize_linear"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".pgm", ".pbm", ".tif", ".tiff", ".webp")
INSTALL_HINT = "pip install 'caffe-keras-harness[images]' (or opencv-python-headless)"
ROUTES = ("data_transformer", "pycaffe")


class ImageError(HarnessError):
    """An image or mean file that cannot be used (unreadable, not an image, wrong shape, smaller than the crop)."""


def require_cv2(what: str = "--images") -> Any:
    """The ``cv2`` module, or a :class:`HarnessError` naming ``what`` and the install hint."""
    try:
        import cv2
    except ImportError:
        raise HarnessError(f"{what} needs OpenCV (cv2), which is not installed: {INSTALL_HINT}") from None
    return cv2


@dataclass(frozen=True)
class CaffeTransform:
    """How Caffe turns an 8-bit image into the net's input (see the module docstring for the two routes).

    ``scale``, ``mean_values`` (one value, or one per channel, in the image's BGR order), ``mean_image`` ((C, H, W)
    float32, from a mean file; exclusive with ``mean_values``), ``crop_size`` (square TEST centre crop, 0 = none),
    ``mirror`` (recorded only: Caffe's random flip is never reproduced, a warning says so), ``color`` (True colour,
    False grey, None as stored), ``new_height``/``new_width`` (ImageData's resize at read time, both or neither);
    pycaffe: ``channel_swap``, ``raw_scale``, ``input_scale``.  ``source`` names where it came from (messages);
    ``top`` is the net input the data layer fills (from a prototxt)."""

    route: str = "data_transformer"
    scale: float = 1.0
    mean_values: tuple[float, ...] = ()
    mean_image: np.ndarray | None = field(default=None, compare=False, repr=False)
    mean_source: str | None = None
    crop_size: int = 0
    mirror: bool = False
    color: bool | None = True
    new_height: int = 0
    new_width: int = 0
    channel_swap: tuple[int, ...] | None = None
    raw_scale: float | None = None
    input_scale: float | None = None
    source: str = "<transform>"
    top: str | None = None  # the data layer's first top (the net input it fills), from a prototxt
    layer_type: str | None = None  # the data layer's type (Data, ImageData, MemoryData), from a prototxt

    def __post_init__(self) -> None:
        if self.route not in ROUTES:
            raise HarnessError(f"{self.source}: route {self.route!r} is not one of {', '.join(ROUTES)}")
        if self.mean_image is not None:
            m = np.array(self.mean_image, np.float32)  # a private read-only copy (the caller's array untouched)
            if m.ndim != 3:
                raise ImageError(f"{self.mean_source or self.source}: mean image has shape {tuple(m.shape)}, "
                                 f"expected (C, H, W)")
            m.flags.writeable = False
            object.__setattr__(self, "mean_image", m)
            if self.mean_values:
                # data_transformer.cpp constructor: CHECK_EQ(param_.mean_value_size(), 0) << "Cannot specify
                # mean_file and mean_value at the same time"
                raise UnsupportedParam(f"{self.source}: mean_file and mean_value given together (Caffe: \"Cannot "
                                       f"specify mean_file and mean_value at the same time\")")
        if self.crop_size < 0 or self.new_height < 0 or self.new_width < 0:
            raise UnsupportedParam(f"{self.source}: negative crop_size/new_height/new_width")
        # image_data_layer.cpp: CHECK((new_height == 0 && new_width == 0) || (new_height > 0 && new_width > 0))
        if (self.new_height > 0) != (self.new_width > 0):
            raise UnsupportedParam(f"{self.source}: new_height={self.new_height} new_width={self.new_width}: "
                                   f"Caffe needs both or neither (image_data_layer.cpp)")
        if self.channel_swap is not None and sorted(self.channel_swap) != list(range(len(self.channel_swap))):
            raise UnsupportedParam(f"{self.source}: channel_swap {self.channel_swap} is not a permutation")

    # ----------------------------------------------------------------------------------------------------------
    @classmethod
    def from_prototxt(cls, prototxt: str | os.PathLike, layer: str | None = None, *,
                      mean_root: str | os.PathLike | None = None, encoded: bool = False,
                      gray: bool = False) -> "CaffeTransform":
        """The TEST-phase data layer's ``transform_param`` of a train_val ``prototxt`` (``layer``: its name, when
        there are several), with ImageData's ``new_height``/``new_width``/``is_color``.  ``mean_file`` is read
        relative to the current folder, else to ``mean_root`` (default: the prototxt's folder).  Fields this harness
        does not implement (``resize_param``, ``noise_param``, ``distort_param``, ``expand_param``,
        ``emit_constraint``) are refused by name.  ``encoded``, ``gray``: how a Data layer's database was written
        (``convert_imageset --encoded`` / ``--gray``; default: neither, as convert_imageset's defaults)."""
        from .. import catalogue
        from ..caffe import _read_text, parse_prototxt
        from ..proto import caffe_pb2 as pb
        from ..upgrade import upgrade_net

        src = str(prototxt)
        parsed = parse_prototxt(_read_text(prototxt), src)
        # upgrade_proto.cpp NetNeedsDataUpgrade / UpgradeNetDataTransformation look at V1 `layers` only (a net is
        # either all V0/V1 `layers` or all `layer`: UpgradeV1Net refuses a mix)
        legacy = len(parsed.layers) > 0
        netp = upgrade_net(parsed, src)
        lp = _test_data_layer(netp, src, layer, catalogue.DATA_TYPES, pb)
        return cls.from_layer_param(lp, src, Path(mean_root) if mean_root else Path(src).parent, legacy=legacy,
                                    encoded=encoded, gray=gray)

    @classmethod
    def from_layer_param(cls, lp: Any, source: str, mean_root: Path | None = None, *, legacy: bool = False,
                         encoded: bool = False, gray: bool = False) -> "CaffeTransform":
        """From one data ``LayerParameter`` (see :meth:`from_prototxt`); ``legacy``: it was a V0/V1 ``layers``
        entry, whose data_param/image_data_param scale, mean_file, crop_size and mirror Caffe's upgrade moves into
        transform_param (on a V2 ``layer`` Caffe ignores them: warned, not applied).  ``encoded``/``gray``: a Data
        layer's database was written by ``convert_imageset --encoded`` / ``--gray`` (see :func:`_decode_rule`)."""
        where = f"{source}: layer {lp.name!r}"
        if lp.type in ("WindowData", "HDF5Data", "DummyData"):
            what = ("samples windows around boxes (window_data_layer.cpp), which the harness does not reproduce"
                    if lp.type == "WindowData" else "reads no image files")
            raise UnsupportedParam(f"{where}: a {lp.type} layer {what}; layer 0 follows Data, ImageData and "
                                   f"MemoryData layers' transform_param")
        tp = lp.transform_param
        for fld in ("resize_param", "noise_param", "distort_param", "expand_param", "emit_constraint"):
            if tp.HasField(fld):
                raise UnsupportedParam(f"{where}: transform_param.{fld} is not implemented by the harness "
                                       f"(TEST-phase Data/ImageData transform only)")
        scale, crop, mirror = float(tp.scale), int(tp.crop_size), bool(tp.mirror)
        mean_file = tp.mean_file if tp.HasField("mean_file") else None
        # upgrade_proto.cpp UpgradeNetDataTransformation: CONVERT_LAYER_TRANSFORM_PARAM(DATA, Data, data) and
        # (IMAGE_DATA, ImageData, image_data) move a V1 layer's scale, mean_file, crop_size and mirror into
        # transform_param; a V2 layer's are never read (DataTransformer reads transform_param only).
        fld = {"Data": "data_param", "ImageData": "image_data_param"}.get(lp.type)
        lg = getattr(lp, fld) if fld and lp.HasField(fld) else None
        old = [f for f in ("scale", "mean_file", "crop_size", "mirror") if lg is not None and lg.HasField(f)]
        if old and legacy:
            scale = float(lg.scale) if lg.HasField("scale") else scale
            crop = int(lg.crop_size) if lg.HasField("crop_size") else crop
            mirror = bool(lg.mirror) if lg.HasField("mirror") else mirror
            mean_file = lg.mean_file if lg.HasField("mean_file") else mean_file
        elif old:
            warnings.warn(LoadWarning(
                f"{where}: {fld}.{', '.join(old)} ignored, as Caffe ignores it: only V1 `layers` get these legacy "
                f"fields moved into transform_param (upgrade_proto.cpp UpgradeNetDataTransformation); a `layer` "
                f"gives them in transform_param"), stacklevel=3)
        nh = nw = 0
        color = _decode_rule(lp, where, encoded=encoded, gray=gray)
        if lp.type == "ImageData":
            nh, nw = int(lp.image_data_param.new_height), int(lp.image_data_param.new_width)
        if mirror:
            warnings.warn(LoadWarning(
                f"{where}: transform_param.mirror=true makes Caffe flip each image left-right at random even in "
                f"TEST phase (mirror() && Rand(2)); the harness's layer 0 never mirrors"), stacklevel=3)
        mean_image = None
        if mean_file:
            path = Path(mean_file)
            if not path.is_absolute() and not path.is_file() and mean_root is not None:
                path = mean_root / mean_file
            mean_image = read_mean_file(str(path), f"{where}: transform_param.mean_file")
        return cls(route="data_transformer", scale=scale, mean_values=tuple(float(v) for v in tp.mean_value),
                   mean_image=mean_image, mean_source=str(mean_file) if mean_file else None, crop_size=crop,
                   mirror=mirror, color=color, new_height=nh, new_width=nw, source=where,
                   top=lp.top[0] if len(lp.top) else None, layer_type=str(lp.type))

    @classmethod
    def from_pycaffe(cls, *, channel_swap: Sequence[int] | None = None, raw_scale: float | None = None,
                     mean_file: str | None = None, mean_values: Sequence[float] = (),
                     input_scale: float | None = None, color: bool = True) -> "CaffeTransform":
        """pycaffe's ``Transformer`` set up as ``classify.py`` does (``set_transpose(2,0,1)`` always;
        ``set_channel_swap``, ``set_raw_scale``, ``set_mean`` from ``mean_file`` (``.binaryproto`` or ``.npy``,
        (C,H,W) or one value per channel) or ``mean_values``, ``set_input_scale``)."""
        mean_image = None
        mv = tuple(float(v) for v in mean_values)
        if mean_file:
            m = read_mean_file(mean_file, "--mean-file")
            mean_image = m if m.ndim == 3 else None
            mv = tuple(float(v) for v in m) if m.ndim == 1 else mv
        return cls(route="pycaffe", mean_values=mv, mean_image=mean_image, mean_source=mean_file,
                   color=color, channel_swap=tuple(int(c) for c in channel_swap) if channel_swap else None,
                   raw_scale=raw_scale, input_scale=input_scale, source="pycaffe Transformer")

    def with_mean_image(self, mean: np.ndarray | None, mean_values: Sequence[float] = ()) -> "CaffeTransform":
        """This transform with another mean (used by fixes and tests)."""
        return replace(self, mean_image=mean, mean_values=tuple(float(v) for v in mean_values))

    def describe(self) -> str:
        """One line: the rules in the order Caffe applies them."""
        parts = []
        if self.route == "pycaffe":
            parts.append("pycaffe: RGB [0,1] -> CHW")
            if self.channel_swap:
                parts.append(f"channel_swap {tuple(self.channel_swap)}")
            if self.raw_scale is not None:
                parts.append(f"*{self.raw_scale:g}")
            parts += self._mean_parts()
            if self.input_scale is not None:
                parts.append(f"*{self.input_scale:g}")
            return ", ".join(parts)
        parts.append("BGR uint8" if self.color is not False else "grey uint8")
        if self.new_height:
            parts.append(f"resize {self.new_height}x{self.new_width} INTER_LINEAR")
        if self.crop_size:
            parts.append(f"centre crop {self.crop_size}")
        parts += self._mean_parts()
        if self.scale != 1.0:
            parts.append(f"*{self.scale:g}")
        return ", ".join(parts)

    def _mean_parts(self) -> list[str]:
        if self.mean_image is not None:
            return [f"- mean image {tuple(self.mean_image.shape)}"]
        if self.mean_values:
            return [f"- ({', '.join(f'{v:g}' for v in self.mean_values)})"]
        return []


def _decode_rule(lp: Any, where: str, *, encoded: bool, gray: bool) -> bool | None:
    """How the files a data layer reads are decoded (:func:`read_image`'s ``color``: True colour, False grey, None
    the file's own channels).

    * ImageData: ``image_data_layer.cpp`` ``ReadImageToCVMat(root_folder + file, new_height, new_width, is_color)``;
      ``Transform(const cv::Mat&)`` never reads force_color/force_gray.
    * Data, database written with ``convert_imageset``'s defaults (``--encoded=false``): ``ReadImageToDatum`` ->
      ``ReadImageToCVMat(file, is_color = !FLAGS_gray)`` -> ``CVMatToDatum``: the Datum holds pixels decoded by
      ``cv::imread(IMREAD_COLOR)`` (3 channels, 8-bit, whatever the file was) or ``IMREAD_GRAYSCALE`` with
      ``--gray``; ``DataTransformer::Transform(const Datum&)``: not encoded -> ``LOG(ERROR) << "force_color and
      force_gray only for encoded datum"`` and the stored pixels are used as they are.
    * Data with an encoded database (``--encoded``: the file's own bytes, since ``ReadImageToDatum`` stores the file
      when its extension is the encoding), and MemoryData: ``force_color`` -> ``DecodeDatumToCVMat(datum, true)``,
      ``force_gray`` -> ``(datum, false)``, neither -> ``DecodeDatumToCVMatNative`` (``cv::imdecode(buf, -1)``)."""
    tp = lp.transform_param
    forced = [f for f in ("force_color", "force_gray") if getattr(tp, f)]
    if lp.type == "ImageData" or (lp.type == "Data" and not encoded):
        why = ("an ImageData layer decodes with image_data_param.is_color" if lp.type == "ImageData" else
               f"the database holds decoded pixels (convert_imageset without --encoded; Caffe logs \"force_color and "
               f"force_gray only for encoded datum\"); give --data-encoded if it was written with --encoded")
        if forced:
            warnings.warn(LoadWarning(f"{where}: transform_param.{' and '.join(forced)} ignored, as Caffe ignores "
                                      f"it: {why}"), stacklevel=4)
        return bool(lp.image_data_param.is_color) if lp.type == "ImageData" else not gray
    if len(forced) == 2:
        # data_transformer.cpp, encoded datum: CHECK(!(param_.force_color() && param_.force_gray()))
        raise UnsupportedParam(f"{where}: transform_param sets both force_color and force_gray (Caffe: "
                               f"\"cannot set both force_color and force_gray\")")
    return True if tp.force_color else False if tp.force_gray else None


def _test_data_layer(netp: Any, src: str, name: str | None, data_types: Iterable[str], pb: Any) -> Any:
    """The data layer of the TEST phase (include/exclude phase rules only), or the named one."""
    def in_test(lp: Any) -> bool:
        if len(lp.include):
            return any(not r.HasField("phase") or r.phase == pb.TEST for r in lp.include)
        return not any(r.HasField("phase") and r.phase == pb.TEST for r in lp.exclude)

    cands = [lp for lp in netp.layer if lp.type in data_types]
    if name is not None:
        named = [lp for lp in cands if lp.name == name]
        if not named:
            raise HarnessError(f"{src}: no data layer named {name!r} (data layers: "
                               f"{', '.join(lp.name for lp in cands) or 'none'})")
        return named[0]
    test = [lp for lp in cands if in_test(lp)]
    if not test:
        raise HarnessError(f"{src}: no TEST-phase data layer (Data, ImageData, ...) with a transform_param; give "
                           f"the preprocessing another way: --transform-prototxt TRAIN_VAL.prototxt, or pycaffe's "
                           f"--channel-swap, --raw-scale, --mean-file/--mean-value, --input-scale")
    if len(test) > 1 and len({lp.SerializeToString() for lp in test}) > 1:
        raise HarnessError(f"{src}: {len(test)} TEST-phase data layers ({', '.join(lp.name for lp in test)}); "
                           f"name one")
    return test[0]


# --------------------------------------------------------------------------------------------------------------
# Mean files


def read_mean_binaryproto(path: str | os.PathLike, what: str = "mean file") -> np.ndarray:
    """A ``.binaryproto`` mean (a ``BlobProto``, as ``compute_image_mean`` writes it and
    ``DataTransformer``'s constructor reads it: ``ReadProtoFromBinaryFileOrDie`` + ``Blob::FromProto``) as a (C, H, W)
    float32 array.  A 4-D blob must have num 1; anything else, or an unparsable file, names the file and value."""
    from google.protobuf.message import DecodeError

    from ..caffe import blob_to_array
    from ..proto import caffe_pb2 as pb

    p = Path(path)
    if not p.is_file():
        raise ImageError(f"{what}: file {str(path)!r} does not exist")
    blob = pb.BlobProto()
    try:
        blob.ParseFromString(p.read_bytes())
    except (DecodeError, RuntimeError, ValueError) as e:
        raise ImageError(f"{what} {str(path)!r}: not a BlobProto (.binaryproto): {e}") from None
    try:
        arr = blob_to_array(blob, f"{what} {str(path)!r}")
    except HarnessError as e:
        raise ImageError(str(e)) from None
    if arr.size == 0:
        raise ImageError(f"{what} {str(path)!r}: the BlobProto holds no values (not a mean file?)")
    if arr.ndim == 4 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim != 3:
        raise ImageError(f"{what} {str(path)!r}: blob shape {list(arr.shape)}, expected (1, C, H, W) or (C, H, W)")
    return np.ascontiguousarray(arr, np.float32)


def read_mean_file(path: str, what: str = "--mean-file") -> np.ndarray:
    """A mean from ``.binaryproto`` ((C,H,W)) or ``.npy`` ((C,H,W) image, or (C,) one value per channel, as
    pycaffe's ``set_mean`` takes it)."""
    if str(path).lower().endswith(".npy"):
        if not Path(path).is_file():
            raise ImageError(f"{what}: file {path!r} does not exist")
        try:
            m = np.load(path, allow_pickle=False)
        except (ValueError, OSError, EOFError) as e:
            raise ImageError(f"{what} {path!r}: cannot read as .npy ({type(e).__name__}: {e})") from None
        if m.ndim == 4 and m.shape[0] == 1:
            m = m[0]
        if m.ndim not in (1, 3) or not np.issubdtype(m.dtype, np.number):
            raise ImageError(f"{what} {path!r}: array shape {tuple(m.shape)} dtype {m.dtype}, expected (C, H, W) or "
                             f"(C,) numbers")
        return np.asarray(m, np.float32)
    return read_mean_binaryproto(path, what)


# --------------------------------------------------------------------------------------------------------------
# Reading images


def image_files(spec: str) -> list[str]:
    """``DIR`` (its image files, by suffix, not recursive) or a ``GLOB`` -> sorted paths; none is an error."""
    p = Path(spec)
    if p.is_dir():
        files = sorted(str(f) for f in p.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise ImageError(f"--images {spec!r}: the folder holds no image files ({', '.join(IMAGE_SUFFIXES)})")
        return files
    files = sorted(f for f in _glob.glob(spec) if Path(f).is_file())
    if not files:
        raise ImageError(f"--images {spec!r}: no such folder, and the pattern matches no file")
    return files


def read_image(path: str | os.PathLike, *, color: bool | None = True, new_height: int = 0,
               new_width: int = 0) -> np.ndarray:
    """One image file as Caffe reads it: uint8, HWC, BGR (colour) or HW1 (grey).

    ``io.cpp`` ``ReadImageToCVMat``: ``cv::imread(filename, is_color ? CV_LOAD_IMAGE_COLOR :
    CV_LOAD_IMAGE_GRAYSCALE)`` (``color`` None: a Data layer's native decode, ``DecodeDatumToCVMatNative``:
    ``cv::imdecode(vec_data, -1)``, i.e. ``IMREAD_UNCHANGED``: the file's own channels and depth), then, when ``height > 0 && width > 0``, ``cv::resize(cv_img_origin, cv_img,
    cv::Size(width, height))`` -- OpenCV's default interpolation, ``INTER_LINEAR``.  ``if (!cv_img_origin.data)``
    Caffe logs "Could not open or find file": here an :class:`ImageError` naming the file."""
    cv2 = require_cv2()
    path = str(path)
    if not Path(path).is_file():
        raise ImageError(f"image {path!r} does not exist")
    flag = cv2.IMREAD_COLOR if color else cv2.IMREAD_GRAYSCALE if color is False else cv2.IMREAD_UNCHANGED
    buf = np.fromfile(path, dtype=np.uint8)
    img = cv2.imdecode(buf, flag) if buf.size else None
    if img is None:
        raise ImageError(f"image {path!r}: OpenCV cannot decode it (not an image, or a format it cannot read)")
    if img.dtype != np.uint8:
        # data_transformer.cpp: CHECK(cv_img.depth() == CV_8U) << "Image data type must be unsigned byte"
        raise ImageError(f"image {path!r}: {img.dtype} pixels; Caffe's transform needs 8-bit (CV_8U) images")
    if new_height > 0 and new_width > 0:
        img = cv2.resize(img, (int(new_width), int(new_height)))  # cv::Size(width, height), default INTER_LINEAR
    if img.ndim == 2:
        img = img[:, :, None]
    return np.ascontiguousarray(img)


def read_rgb(path: str | os.PathLike) -> np.ndarray:
    """The image the Keras side sees: RGB uint8 HWC at the file's own size, as ``keras.utils.load_img(path)`` +
    ``img_to_array`` gives it (here decoded by OpenCV and reordered BGR -> RGB, so both sides start from the same
    pixels)."""
    img = read_image(path, color=True)
    return np.ascontiguousarray(img[:, :, ::-1])


def keras_pixels(original: np.ndarray, path: str | os.PathLike) -> np.ndarray:
    """The Keras side's view of a file Caffe decoded as ``original`` (:func:`read_originals`): RGB (``load_img``'s
    default) when Caffe reads colour, and the same one-channel pixels when Caffe reads it gray (ImageData
    ``is_color: false``, ``force_gray``, or a gray file a Data layer decodes natively) -- what
    ``load_img(path, color_mode="grayscale")`` gives a port of a gray net."""
    if original.shape[2] == 3:
        return np.ascontiguousarray(original[:, :, ::-1])
    if original.shape[2] == 1:
        return original
    return read_rgb(path)


# --------------------------------------------------------------------------------------------------------------
# The transforms


def caffe_preprocess(images: Sequence[np.ndarray] | np.ndarray, transform: CaffeTransform, *,
                     input_hw: tuple[int, int] | None = None, names: Sequence[str] | None = None,
                     offsets: Callable[[int, int, int], tuple[int, int]] | None = None,
                     allow_float: bool = False) -> np.ndarray:
    """Images as :func:`read_image` returns them (uint8 HWC BGR, already resized by ImageData's
    ``new_height``/``new_width``) -> float32 NCHW, by ``transform``'s route.  ``input_hw``: the net input's (H, W)
    (checked; the pycaffe route needs it).  ``names`` (the files) name the image in errors.  For the diagnosis, which
    models a preprocessing bug: ``offsets(img_h, img_w, crop)`` -> (h_off, w_off) crops there instead of at Caffe's
    TEST centre, and ``allow_float`` takes float pixels (an image a Keras pipeline resized in float); Caffe itself
    takes 8-bit images only."""
    imgs = [np.asarray(im) for im in images]
    if not imgs:
        raise ImageError("no images to preprocess")
    names = list(names) if names is not None else [f"image {i}" for i in range(len(imgs))]
    fn = _transform_pycaffe if transform.route == "pycaffe" else _transform_data
    outs = []
    for im, nm in zip(imgs, names):
        if im.ndim == 2:
            im = im[:, :, None]
        if im.ndim != 3 or not (im.dtype == np.uint8 or (allow_float and np.issubdtype(im.dtype, np.floating))):
            raise ImageError(f"{nm}: expected uint8 HWC pixels, got {im.dtype} shape {tuple(im.shape)}")
        out = fn(im, transform, input_hw, nm, offsets)
        if input_hw is not None and tuple(out.shape[1:]) != tuple(input_hw):
            raise ImageError(f"{nm}: preprocessed to {out.shape[1]}x{out.shape[2]} ({transform.describe()}), the "
                             f"net input is {input_hw[0]}x{input_hw[1]}")
        if outs and out.shape != outs[0].shape:
            raise ImageError(f"{nm}: preprocessed to shape {tuple(out.shape)}, {names[0]} to "
                             f"{tuple(outs[0].shape)}: the images do not batch (give crop_size or new_height/"
                             f"new_width)")
        outs.append(out)
    return np.stack(outs).astype(np.float32, copy=False)


def _transform_data(im: np.ndarray, t: CaffeTransform, input_hw: Any, name: str,
                    offsets: Callable[[int, int, int], tuple[int, int]] | None = None) -> np.ndarray:
    """``DataTransformer<Dtype>::Transform(const cv::Mat& cv_img, Blob<Dtype>* transformed_blob)``, TEST phase."""
    img_h, img_w, c = im.shape
    crop = t.crop_size
    # CHECK_GE(img_height, crop_size); CHECK_GE(img_width, crop_size);
    if crop and (img_h < crop or img_w < crop):
        raise ImageError(f"{name}: {img_h}x{img_w} (HxW) is smaller than crop_size {crop} (Caffe: CHECK_GE(img_height, "
                         f"crop_size))")
    h_off = w_off = 0
    height, width = img_h, img_w
    if crop:
        # "We only do random crop when we do training." else: h_off = (img_height - crop_size) / 2;
        # w_off = (img_width - crop_size) / 2;  (integer division)
        h_off, w_off = (img_h - crop) // 2, (img_w - crop) // 2
        if offsets is not None:
            h_off, w_off = (min(max(int(o), 0), n - crop) for o, n in zip(offsets(img_h, img_w, crop), (img_h, img_w)))
        height = width = crop
    # Dtype pixel = static_cast<Dtype>(ptr[img_index++]);  (uint8 -> float, HWC -> CHW at top_index)
    x = im[h_off:h_off + height, w_off:w_off + width, :].transpose(2, 0, 1).astype(np.float32)
    if t.mean_image is not None:
        m = t.mean_image
        # CHECK_EQ(img_channels, data_mean_.channels()); CHECK_EQ(img_height, data_mean_.height());
        # CHECK_EQ(img_width, data_mean_.width());  -- the mean image has the full (uncropped) image size
        if m.shape != (c, img_h, img_w):
            raise ImageError(f"{t.mean_source or 'mean file'}: mean image shape {tuple(m.shape)} (C, H, W), {name} is "
                             f"{(c, img_h, img_w)}: Caffe needs them equal (CHECK_EQ in "
                             f"DataTransformer::Transform)")
        # mean_index = (c * img_height + h_off + h_idx_real) * img_width + w_off + w_idx_real;
        # transformed_data[top_index] = (pixel - mean[mean_index]) * scale;
        x = (x - m[:, h_off:h_off + height, w_off:w_off + width]) * np.float32(t.scale)
    elif t.mean_values:
        mv = t.mean_values
        # CHECK(mean_values_.size() == 1 || mean_values_.size() == img_channels) << "Specify either 1 mean_value or
        # as many as channels"; one value is replicated to every channel.
        if len(mv) not in (1, c):
            raise ImageError(f"{t.source}: {len(mv)} mean_value(s) for {name}, which has {c} channel(s) (Caffe: "
                             f"\"Specify either 1 mean_value or as many as channels\")")
        mean = np.asarray(mv * c if len(mv) == 1 else mv, np.float32).reshape(c, 1, 1)
        x = (x - mean) * np.float32(t.scale)  # (pixel - mean_values_[c]) * scale
    else:
        x = x * np.float32(t.scale)  # transformed_data[top_index] = pixel * scale;
    return x


def _transform_pycaffe(im: np.ndarray, t: CaffeTransform, input_hw: Any, name: str,
                       offsets: Any = None) -> np.ndarray:
    """``python/caffe/io.py`` ``Transformer.preprocess`` on ``caffe.io.load_image``'s image (``skimage.img_as_float``
    of the RGB file: ``uint8 / 255``, float32)."""
    if input_hw is None:
        raise HarnessError("the pycaffe route needs the net input's (H, W) (Transformer.inputs)")
    rgb = im[:, :, ::-1] if im.shape[2] == 3 else im  # read_image gives BGR; load_image gives RGB
    caffe_in = rgb.astype(np.float32) / np.float32(255.0)  # img_as_float, then .astype(np.float32)
    if tuple(caffe_in.shape[:2]) != tuple(input_hw):
        # if caffe_in.shape[:2] != in_dims: caffe_in = resize_image(caffe_in, in_dims)  -- skimage, not reproduced
        raise ImageError(f"{name}: {caffe_in.shape[0]}x{caffe_in.shape[1]}, the net input is "
                         f"{input_hw[0]}x{input_hw[1]}; pycaffe resizes it with skimage (caffe.io.resize_image), which "
                         f"the harness does not reproduce: give images of the net's input size")
    caffe_in = caffe_in.transpose(2, 0, 1)  # caffe_in = caffe_in.transpose(transpose), transpose = (2, 0, 1)
    if t.channel_swap is not None:
        if len(t.channel_swap) != caffe_in.shape[0]:
            raise ImageError(f"--channel-swap {t.channel_swap}: {len(t.channel_swap)} channels, {name} has "
                             f"{caffe_in.shape[0]}")
        caffe_in = caffe_in[list(t.channel_swap), :, :]  # caffe_in = caffe_in[channel_swap, :, :]
    if t.raw_scale is not None:
        caffe_in = caffe_in * np.float32(t.raw_scale)  # caffe_in *= raw_scale
    c = caffe_in.shape[0]
    if t.mean_image is not None:
        caffe_in = caffe_in - pycaffe_set_mean(t.mean_image, caffe_in.shape, t.mean_source or "--mean-file")
    elif t.mean_values:
        # set_mean: "if mean.ndim == 1: broadcast channels; if ms[0] != self.inputs[in_][1]: raise ValueError(
        # 'Mean channels incompatible with input.')"
        if len(t.mean_values) != c:
            raise ImageError(f"{t.mean_source or '--mean-value'}: {len(t.mean_values)} mean values for {c} channels "
                             f"(pycaffe: 'Mean channels incompatible with input.')")
        caffe_in = caffe_in - np.asarray(t.mean_values, np.float32).reshape(c, 1, 1)
    if t.input_scale is not None:
        caffe_in = caffe_in * np.float32(t.input_scale)  # caffe_in *= input_scale
    return caffe_in


def pycaffe_set_mean(mean: np.ndarray, in_shape: Sequence[int], what: str = "--mean-file") -> np.ndarray:
    """The mean ``Transformer.set_mean`` keeps for an input of (C, H, W) ``in_shape`` (BVLC ``python/caffe/io.py``):
    an elementwise mean of another H x W is resized to the input -- ``m_min, m_max = mean.min(), mean.max()``;
    ``normal_mean = (mean - m_min) / (m_max - m_min)``; ``resize_image(normal_mean.transpose((1,2,0)),
    in_shape[1:]).transpose((2,0,1)) * (m_max - m_min) + m_min`` -- and ``resize_image`` (1 or 3 channels) is
    scikit-image's ``resize(im, new_dims, order=1, mode='constant')``: :func:`skimage_resize_linear`."""
    m = np.asarray(mean, np.float32)
    c, h, w = (int(v) for v in in_shape)
    if m.shape == (c, h, w):
        return m
    if m.shape[0] != c:
        raise ImageError(f"{what}: mean shape {tuple(m.shape)} has {m.shape[0]} channel(s), the input {c} "
                         f"(pycaffe's set_mean resizes H x W only)")
    if c not in (1, 3):
        raise ImageError(f"{what}: a {c}-channel mean of another size than the input: pycaffe's resize_image then "
                         f"uses scipy.ndimage.zoom, which the harness does not reproduce; give a mean of "
                         f"{c}x{h}x{w}")
    lo, hi = m.min(), m.max()
    if not hi > lo:
        raise ImageError(f"{what}: a constant mean image of another size than the input: pycaffe's set_mean divides "
                         f"by its max - min = 0; give one value per channel (--mean-value)")
    normal = (m - lo) / (hi - lo)  # float32, as numpy computes it on the float32 mean
    resized = skimage_resize_linear(normal.transpose(1, 2, 0), (h, w))
    # resize_image: resized_std * (im_max - im_min) + im_min, with im_min, im_max = 0, 1 here; astype(np.float32)
    resized = (resized * (normal.max() - normal.min()) + normal.min()).astype(np.float32)
    return (resized.transpose(2, 0, 1) * (hi - lo) + lo).astype(np.float32)


def skimage_resize_linear(im: np.ndarray, out_hw: tuple[int, int]) -> np.ndarray:
    """``skimage.transform.resize(im, out_hw, order=1, mode='constant')`` of a float32 (H, W, C) image in [0, 1]
    (scikit-image >= 0.19 with SciPy >= 1.6), derived from its documented steps: when either axis shrinks,
    ``anti_aliasing`` (its default) smooths first with ``ndi.gaussian_filter`` of ``sigma = max(0, (in/out - 1)/2)``
    per axis (radius ``int(4*sigma + 0.5)``, zeros beyond the edge, each axis pass rounded to float32); then
    ``ndi.zoom(..., order=1, mode='grid-constant', grid_mode=True)``: output pixel ``o`` reads input coordinate
    ``(o + 0.5)*in/out - 0.5`` linearly, zeros (cval) beyond the edge; then clipped to the input's [min, max]."""
    x = np.asarray(im, np.float32)
    factors = [x.shape[0] / out_hw[0], x.shape[1] / out_hw[1]]
    if any(f > 1 for f in factors):
        for axis, f in enumerate(factors):
            sigma = max(0.0, (f - 1) / 2)
            if sigma > 1e-15:
                x = _gauss_axis(x, axis, sigma)
    y = x.astype(np.float64)
    for axis, n in enumerate(out_hw):
        y = _linear_axis(y, axis, int(n))
    return np.clip(y.astype(np.float32), np.min(im), np.max(im))


def _gauss_axis(x: np.ndarray, axis: int, sigma: float) -> np.ndarray:
    r = int(4.0 * sigma + 0.5)
    k = np.exp(-0.5 / sigma ** 2 * np.arange(-r, r + 1, dtype=np.float64) ** 2)
    k /= k.sum()
    xm = np.moveaxis(x.astype(np.float64), axis, 0)
    pad = np.concatenate([np.zeros((r,) + xm.shape[1:]), xm, np.zeros((r,) + xm.shape[1:])])
    out = sum(k[j] * pad[j:j + xm.shape[0]] for j in range(2 * r + 1))
    return np.moveaxis(np.asarray(out), 0, axis).astype(np.float32)


def _linear_axis(y: np.ndarray, axis: int, n_out: int) -> np.ndarray:
    ym = np.moveaxis(y, axis, 0)
    n = ym.shape[0]
    coord = (np.arange(n_out, dtype=np.float64) + 0.5) * (n / n_out) - 0.5
    i0 = np.floor(coord).astype(np.int64)
    wt = (coord - i0).reshape((-1,) + (1,) * (ym.ndim - 1))
    padded = np.concatenate([np.zeros((1,) + ym.shape[1:]), ym, np.zeros((1,) + ym.shape[1:])])
    v0 = padded[np.clip(i0, -1, n) + 1]
    v1 = padded[np.clip(i0 + 1, -1, n) + 1]
    return np.moveaxis((1 - wt) * v0 + wt * v1, 0, axis)


def read_originals(paths: Sequence[str], transform: CaffeTransform) -> list[np.ndarray]:
    """The files as Caffe decodes them for ``transform`` (colour rule; not yet resized): uint8 HWC."""
    return [read_image(p, color=True if transform.route == "pycaffe" else transform.color) for p in paths]


def caffe_resize(img: np.ndarray, transform: CaffeTransform) -> np.ndarray:
    """ImageData's resize at read time (``ReadImageToCVMat``: ``cv::resize(cv_img_origin, cv_img, cv::Size(width,
    height))``, INTER_LINEAR on the 8-bit image), or the image unchanged when new_height/new_width are 0."""
    if transform.new_height > 0 and transform.new_width > 0:
        cv2 = require_cv2()
        out = cv2.resize(img, (int(transform.new_width), int(transform.new_height)))
        return out[:, :, None] if out.ndim == 2 else out
    return img


def caffe_layer0(originals: Sequence[np.ndarray], transform: CaffeTransform, *,
                 input_hw: tuple[int, int] | None = None, names: Sequence[str] | None = None) -> np.ndarray:
    """Decoded images (:func:`read_originals`) -> Caffe's NCHW float32 input: :func:`caffe_resize`, then
    :func:`caffe_preprocess`."""
    return caffe_preprocess([caffe_resize(im, transform) for im in originals], transform, input_hw=input_hw,
                            names=names)


def load_batch(paths: Sequence[str], transform: CaffeTransform, *,
               input_hw: tuple[int, int] | None = None) -> np.ndarray:
    """Image files -> the net's float32 NCHW input, as Caffe computes it (:func:`read_image` with the transform's
    colour rule and ImageData resize, then :func:`caffe_preprocess`).  Every problem names the file."""
    return caffe_layer0(read_originals(paths, transform), transform, input_hw=input_hw,
                        names=[f"image {str(p)!r}" for p in paths])
