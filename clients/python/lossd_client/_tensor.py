"""Tensor encoding for lossd requests (docs/API.md section 1).

What travels how:
- numpy arrays (and torch / tensorflow tensors, via numpy) travel as
  {"shape", "dtype", "b64"} of little-endian raw values. Floating arrays go as
  float32 unless the client asked for float64; integer arrays keep int32,
  int64 or uint8 (the dtypes lossd accepts) and are widened to the nearest of
  them otherwise; booleans go as uint8.
- array.array (the standard library's typed buffer) travels the same way, so
  the compact encoding is available without numpy.
- Python lists and tuples travel as nested JSON arrays. JSON has no NaN or
  Infinity, so a list holding a non-finite float is sent as base64 float64
  instead, which lets the server apply its nan_policy rather than the client
  failing on serialisation.
- Scalars are plain numbers.

Nothing here validates shapes or labels: the server does that and answers with
a precise problem+json pointer, which a client-side check would only duplicate
and eventually contradict.
"""

import array
import base64
import math
import struct
import sys

try:  # numpy is optional: used when present, never required.
    import numpy as _np
except ImportError:  # pragma: no cover - depends on the machine
    _np = None

__all__ = ["encode_tensor", "encode_value", "decode_tensor", "HAVE_NUMPY"]

HAVE_NUMPY = _np is not None

_LE = sys.byteorder == "little"

# array.array typecode -> (lossd dtype, array.array typecode of that dtype)
_FLOAT_CODES = {"f": "float32", "d": "float64"}

_DTYPE_STRUCT = {
    "float32": ("f", 4),
    "float64": ("d", 8),
    "int32": ("i", 4),
    "int64": ("q", 8),
    "uint8": ("B", 1),
}


def _b64_dict(shape, dtype, raw):
    return {
        "shape": [int(n) for n in shape],
        "dtype": dtype,
        "b64": base64.b64encode(raw).decode("ascii"),
    }


def _check_float_dtype(float_dtype):
    if float_dtype not in ("float32", "float64"):
        raise ValueError("float_dtype must be 'float32' or 'float64', not %r" % (float_dtype,))


# --- numpy ----------------------------------------------------------------

def _is_ndarray(x):
    return _np is not None and isinstance(x, _np.ndarray)


def _is_np_scalar(x):
    return _np is not None and isinstance(x, _np.generic)


def _ndarray_target_dtype(a, float_dtype):
    kind = a.dtype.kind
    size = a.dtype.itemsize
    if kind == "b":
        return "uint8"
    if kind == "u":
        if size == 1:
            return "uint8"
        if size <= 2:
            return "int32"
        if size <= 4:
            return "int64"
        if a.size and int(a.max()) > 2**63 - 1:
            raise ValueError("uint64 values above 2**63-1 cannot be sent to lossd")
        return "int64"
    if kind == "i":
        return "int32" if size <= 4 else "int64"
    if kind == "f":
        if size <= 4:
            return "float32"
        return float_dtype
    raise TypeError("cannot send a numpy array of dtype %s to lossd" % a.dtype)


def _encode_ndarray(a, float_dtype):
    if a.ndim == 0:
        return _scalar(a.item())
    name = _ndarray_target_dtype(a, float_dtype)
    target = _np.dtype(name).newbyteorder("<")
    with _np.errstate(over="ignore", invalid="ignore"):
        b = _np.ascontiguousarray(a, dtype=target)
    if name == "float32" and a.dtype.itemsize > 4:
        # A float64 that overflows float32 would arrive as Inf and be reported
        # as non-finite data the caller never had: refuse clearly instead.
        with _np.errstate(over="ignore", invalid="ignore"):
            lost = _np.isfinite(a) & ~_np.isfinite(b)
        if lost.any():
            raise ValueError(
                "values overflow float32; create the Client with float64=True")
    return _b64_dict(b.shape, name, b.tobytes())


def _as_ndarray_or_list(x):
    """Torch / TensorFlow / JAX tensors and other array-likes -> ndarray or list."""
    if hasattr(x, "detach") and callable(x.detach):  # torch.Tensor
        x = x.detach()
        if hasattr(x, "cpu"):
            x = x.cpu()
    if _np is not None:
        if hasattr(x, "numpy") and callable(x.numpy):
            return _np.asarray(x.numpy())
        if hasattr(x, "__array__"):
            return _np.asarray(x)
    if hasattr(x, "tolist") and callable(x.tolist):
        return x.tolist()
    raise TypeError("cannot send a %s to lossd as a tensor" % type(x).__name__)


# --- array.array ------------------------------------------------------------

def _encode_array(a, float_dtype):
    code = a.typecode
    if code in _FLOAT_CODES:
        name = _FLOAT_CODES[code]
        if name == "float64" and float_dtype == "float32":
            b = array.array("f", a.tolist())
            for u, v in zip(a, b):
                if math.isfinite(u) and not math.isfinite(v):
                    raise ValueError(
                        "values overflow float32; create the Client with float64=True")
            a, name = b, "float32"
    elif code in "bhilq":
        name = "int32" if a.itemsize <= 4 else "int64"
    elif code in "BHILQ":
        if code == "B":
            name = "uint8"
        else:
            name = "int32" if a.itemsize <= 2 else "int64"
            if name == "int64" and a.itemsize == 8 and len(a) and max(a) > 2**63 - 1:
                raise ValueError("uint64 values above 2**63-1 cannot be sent to lossd")
    else:
        raise TypeError("cannot send array.array of typecode %r to lossd" % code)
    want_code, _ = _DTYPE_STRUCT[name]
    if a.typecode != want_code:
        a = array.array(want_code, a.tolist())
    if not _LE:  # pragma: no cover - big-endian hosts
        a = array.array(a.typecode, a)
        a.byteswap()
    return _b64_dict([len(a)], name, a.tobytes())


# --- lists --------------------------------------------------------------------

class _NonFinite(Exception):
    pass


def _scalar(v):
    if isinstance(v, bool):
        return int(v)
    if isinstance(v, int):
        return v
    if isinstance(v, float):
        return v
    if _is_np_scalar(v):
        return _scalar(v.item())
    if v is None or isinstance(v, str):
        return v  # not a number: the server answers 422 with its pointer
    raise TypeError("tensor elements must be numbers, not %s" % type(v).__name__)


def _plain(x):
    """Nested lists/tuples/arrays -> nested lists of Python numbers.

    Raises _NonFinite when a float is NaN or infinite (JSON cannot carry it).
    """
    if isinstance(x, (list, tuple)):
        return [_plain(e) for e in x]
    if _is_ndarray(x):
        return _plain(x.tolist())
    if isinstance(x, array.array):
        return _plain(x.tolist())
    v = _scalar(x)
    if isinstance(v, float) and not math.isfinite(v):
        raise _NonFinite()
    return v


def _shape_flat(x):
    """Shape and row-major flat values of a rectangular nested list."""
    if not isinstance(x, list):
        return [], [x]
    if not x:
        return [0], []
    parts = [_shape_flat(e) for e in x]
    shape0 = parts[0][0]
    flat = []
    for shape, values in parts:
        if shape != shape0:
            raise ValueError("ragged list: rows of different shapes")
        flat.extend(values)
    return [len(x)] + shape0, flat


def _plain_nonfinite(x):
    """Like _plain but keeps NaN/Inf (for the float64 fallback)."""
    if isinstance(x, (list, tuple)):
        return [_plain_nonfinite(e) for e in x]
    if _is_ndarray(x) or isinstance(x, array.array):
        return _plain_nonfinite(x.tolist())
    v = _scalar(x)
    if not isinstance(v, (int, float)):
        raise ValueError("non-numeric element %r" % (v,))
    return float(v)


def _encode_list(x):
    try:
        return _plain(x)
    except _NonFinite:
        pass
    try:
        shape, flat = _shape_flat(_plain_nonfinite(x))
    except ValueError as e:
        raise ValueError("a list with NaN or Infinity must be rectangular to be "
                         "sent as base64 float64: %s" % e) from None
    raw = struct.pack("<%dd" % len(flat), *flat)
    return _b64_dict(shape, "float64", raw)


# --- public -------------------------------------------------------------------

def encode_tensor(x, float_dtype="float32"):
    """Encode one tensor-valued field into its JSON form.

    x: numpy array, torch/tf tensor, array.array, (nested) list or tuple,
    a scalar, or an already-encoded dict ({"shape","data"} / {"shape","dtype","b64"}).
    """
    _check_float_dtype(float_dtype)
    if x is None or isinstance(x, str):
        return x  # not a tensor: the server answers 422 with its pointer
    if isinstance(x, dict):
        return {k: (encode_tensor(v, float_dtype) if k == "data" else v)
                for k, v in x.items()}
    if _is_ndarray(x):
        return _encode_ndarray(x, float_dtype)
    if isinstance(x, array.array):
        return _encode_array(x, float_dtype)
    if isinstance(x, (list, tuple)):
        return _encode_list(x)
    if isinstance(x, (bool, int, float)) or _is_np_scalar(x):
        v = _scalar(x)
        if isinstance(v, float) and not math.isfinite(v):
            raise ValueError("a non-finite scalar cannot travel as JSON; "
                             "send it inside an array")
        return v
    y = _as_ndarray_or_list(x)
    return encode_tensor(y, float_dtype)


def encode_value(v, float_dtype="float32"):
    """Encode a request body or option value: dicts recurse, tensors encode,
    strings / booleans / None / numbers pass through (booleans stay booleans
    at option level: "from_logits": true)."""
    if isinstance(v, dict):
        return {k: encode_value(e, float_dtype) for k, e in v.items()}
    if v is None or isinstance(v, (str, bool)):
        return v
    if isinstance(v, (int, float)):
        return v
    if _is_np_scalar(v):
        return v.item()
    if isinstance(v, (list, tuple)) and v and all(isinstance(e, dict) for e in v):
        return [encode_value(e, float_dtype) for e in v]  # e.g. "heads"
    if isinstance(v, (list, tuple)) and v and all(isinstance(e, str) for e in v):
        return list(v)
    return encode_tensor(v, float_dtype)


def decode_tensor(obj, as_numpy=False):
    """Inverse of encode_tensor for the three encodings: nested lists (or an
    ndarray when as_numpy and numpy is present)."""
    if isinstance(obj, dict):
        shape = [int(n) for n in obj["shape"]]
        if "b64" in obj:
            dtype = obj.get("dtype", "float32")
            if dtype not in _DTYPE_STRUCT:
                raise ValueError("unknown dtype %r" % dtype)
            code, size = _DTYPE_STRUCT[dtype]
            raw = base64.b64decode(obj["b64"], validate=True)
            if len(raw) % size:
                raise ValueError("b64 length is not a multiple of the item size")
            flat = list(struct.unpack("<%d%s" % (len(raw) // size, code), raw))
        else:
            flat = list(obj["data"])
        n = 1
        for d in shape:
            n *= d
        if n != len(flat):
            raise ValueError("shape %s does not match %d values" % (shape, len(flat)))
        out = _nest(flat, shape)
    else:
        out = obj
    if as_numpy and _np is not None:
        return _np.asarray(out)
    return out


def _nest(flat, shape):
    if not shape:
        return flat[0]
    if len(shape) == 1:
        return list(flat)
    step = len(flat) // shape[0] if shape[0] else 0
    return [_nest(flat[i * step:(i + 1) * step], shape[1:]) for i in range(shape[0])]
