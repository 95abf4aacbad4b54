"""Reading official SMPL ``.pkl`` files without trusting them.

Those files were written in Python 2 with chumpy arrays and scipy sparse matrices
inside. ``pickle.load`` would import and run whatever a file names, so a model file
from the internet could execute code. This unpickler resolves only numpy's array
machinery; chumpy and scipy-sparse objects become inert stand-ins that are turned
into plain numpy arrays afterwards (chumpy does not even import on Python 3.11), and
every other class is refused.
"""
from __future__ import annotations

import _compat_pickle
import codecs
import copyreg
import pickle
from typing import Any, BinaryIO

import numpy as np

_NUMPY_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"), ("numpy", "dtype"),
}
_BUILTIN_GLOBALS = {
    ("copyreg", "_reconstructor"): copyreg._reconstructor,
    ("builtins", "object"): object,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    # Python 3 writes bytes into protocol-2 pickles as codecs.encode(text, "latin1").
    ("_codecs", "encode"): codecs.encode,
}
_SPARSE_FORMATS = ("csc_matrix", "csr_matrix", "coo_matrix")


class ForeignObjectError(pickle.UnpicklingError):
    """The pickle names a class this reader will not create."""


class _Inert:
    """Stand-in for a chumpy or scipy object: records its pickled state, runs nothing."""

    kind = ""

    def __new__(cls, *args: Any, **kwargs: Any) -> "_Inert":
        return object.__new__(cls)

    def __setstate__(self, state: Any) -> None:
        self.state = state


class _ChumpyArray(_Inert):
    kind = "chumpy"


class _SparseMatrix(_Inert):
    kind = "sparse"


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        # Python 2 names (copy_reg, __builtin__) as the default find_class would map them.
        if (module, name) in _compat_pickle.NAME_MAPPING:
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        if (module, name) in _NUMPY_GLOBALS:
            return super().find_class(module, name)
        if (module, name) in _BUILTIN_GLOBALS:
            return _BUILTIN_GLOBALS[(module, name)]
        if module.split(".")[0] == "chumpy":
            return _ChumpyArray
        if module.startswith("scipy.sparse") and name in _SPARSE_FORMATS:
            return type(name, (_SparseMatrix,), {"format": name[:3]})
        raise ForeignObjectError(f"refusing to load {module}.{name}: not a numpy array")


def _to_numpy(value: Any) -> Any:
    """Turns stand-ins (recursively inside dicts) into numpy arrays."""
    if isinstance(value, dict):
        return {k: _to_numpy(v) for k, v in value.items()}
    if isinstance(value, _ChumpyArray):
        state = value.state if isinstance(value.state, dict) else {}
        if "x" not in state:
            raise ForeignObjectError("a chumpy expression (not a plain chumpy array) cannot be read")
        return np.asarray(state["x"])
    if isinstance(value, _SparseMatrix):
        return _sparse_to_dense(value)
    return value


def _sparse_to_dense(matrix: _SparseMatrix) -> np.ndarray:
    state = matrix.state
    shape = tuple(state.get("_shape", state.get("shape", ())))
    if len(shape) != 2:
        raise ForeignObjectError("a sparse matrix without a 2-D shape")
    dense = np.zeros(shape, dtype=np.float64)
    data = np.asarray(state["data"], dtype=np.float64)
    if matrix.format == "coo":
        np.add.at(dense, (np.asarray(state["row"]), np.asarray(state["col"])), data)
        return dense
    indices, indptr = np.asarray(state["indices"]), np.asarray(state["indptr"])
    major = np.repeat(np.arange(len(indptr) - 1), np.diff(indptr))
    rows, cols = (indices, major) if matrix.format == "csc" else (major, indices)
    np.add.at(dense, (rows, cols), data)
    return dense


def load_model_pickle(stream: BinaryIO) -> dict[str, Any]:
    """Reads a (Python 2 era) SMPL pickle into a dict of numpy arrays and plain values.

    Raises:
        ForeignObjectError: the file names a class other than numpy arrays, chumpy
            arrays or scipy sparse matrices.
        pickle.UnpicklingError, EOFError: the file is not a complete pickle.
    """
    data = _RestrictedUnpickler(stream, encoding="latin1").load()
    if not isinstance(data, dict):
        raise pickle.UnpicklingError(f"expected a dict of arrays, found {type(data).__name__}")
    return _to_numpy(data)
