"""FFCV's numba compile, paid once per machine instead of once per process: an on-disk cache for the code
FFCV compiles, shared by `vt-prep`, the training loader and the tests.

What FFCV 1.0.2 compiles, and what of it numba would cache as shipped (nothing):
- at import, numba's typed dict (`IMAGE_MODES = Dict()` in ffcv.fields.rgb_image): ≈3 s. numba's own
  functions are not compiled with cache=True; `_cache_typed_dict` turns their cache on.
- for every Loader (one per shard), its pipeline: the page reader, the scalar decoders and the image decoder,
  closures made at run time and compiled by `ffcv.pipeline.compiler.Compiler.compile` without cache=True:
  ≈2 s. Two things stop numba's cache even with cache=True: its key pickles the closure's cells, and a numba
  dispatcher in a cell pickles with a random uuid (a new key in every process, so it never hits); and code
  that calls ctypes pointers (libffcv's imdecode, memcpy, resize) embeds their addresses, valid in one process
  only, so numba refuses to save it. `_compile` keys the cache on a fingerprint of the closure instead (its
  bytecode, its cells, and what it calls, recursively), and compiles the three C helpers as calls to their
  symbols in FFCV's library, which are resolved again when cached code is loaded.
What stays uncached: FFCV transforms that call ctypes themselves (fast_crop's resize), closures holding a
cell of an unknown kind; they compile as before.

Where: $VIDEOTRAIN_JIT_CACHE, else $NUMBA_CACHE_DIR, else $XDG_CACHE_HOME/videotrain/numba (default
~/.cache/videotrain/numba). VIDEOTRAIN_JIT_CACHE=off turns it off. Deleting the folder clears it; numba drops
entries itself when numba, the Python version, the CPU or a compiled function's source file changes.
"""
from __future__ import annotations

import hashlib
import marshal
import os
import sys
import types
import warnings
from pathlib import Path

ENV = "VIDEOTRAIN_JIT_CACHE"
FFCV_VERSION = "1.0.2"  # the compiler and the C helpers' ctypes signatures below are those of this release
_enabled = False


def cache_dir() -> Path | None:
    """The cache folder this process uses, or None when turned off."""
    chosen = os.environ.get(ENV) or os.environ.get("NUMBA_CACHE_DIR")
    if chosen and chosen.lower() in ("off", "0", "none"):
        return None
    if chosen:
        return Path(chosen).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "videotrain" / "numba"


def configure() -> Path | None:
    """Point numba's cache at cache_dir(), here and in every child process. Cheap: imports nothing."""
    path = cache_dir()
    if path is None:
        return None
    try:
        path.mkdir(parents=True, exist_ok=True)
        writable = os.access(path, os.W_OK)
    except OSError:
        writable = False
    if not writable:
        print(f"videotrain: JIT cache {path} is not writable; FFCV compiles from scratch (set {ENV})",
              file=sys.stderr)
        return None
    os.environ["NUMBA_CACHE_DIR"] = str(path)
    if "numba" in sys.modules:  # numba read the environment at import; its locator reads the config later
        sys.modules["numba"].core.config.CACHE_DIR = str(path)
    return path


def enable() -> Path | None:
    """Set up the cache, then import ffcv. Call it before the first `import ffcv...` of a process (the import
    itself compiles); idempotent. Returns the cache folder (None: off)."""
    global _enabled
    path = configure()
    if path is None or _enabled:
        return path
    _cache_typed_dict()
    import ffcv  # noqa: F401  compiles (or loads) the typed dict
    from importlib.metadata import version

    if version("ffcv") == FFCV_VERSION:
        from ffcv.pipeline.compiler import Compiler

        Compiler.compile = classmethod(_compile)
    _enabled = True
    return path


def _cache_typed_dict() -> None:
    from numba.core.registry import CPUDispatcher
    from numba.typed import typeddict

    for obj in vars(typeddict).values():
        if isinstance(obj, CPUDispatcher) and obj._cache.cache_path is None:
            obj.enable_caching()


# -- FFCV's compiler, with a cache ------------------------------------------------------------------------
def _compile(cls, code, signature=None):
    """ffcv.pipeline.compiler.Compiler.compile of FFCV 1.0.2 (same options, same eager compile when given a
    signature), plus the cache."""
    from numba import njit

    if not cls.is_enabled:
        return code
    code = next((ours for theirs, ours in _symbolic().items() if theirs is code), code)
    parallel = bool(getattr(code, "is_parallel", False)) and cls.num_threads > 1
    dispatcher = njit(fastmath=True, nogil=True, error_model="numpy", parallel=parallel)(code)
    _attach_cache(dispatcher)
    if signature is not None:
        dispatcher.compile(signature)
        dispatcher.disable_compile()
    return dispatcher


def _attach_cache(dispatcher) -> None:
    from numba.core.caching import FunctionCache
    from numba.core.errors import NumbaWarning

    class StableKeyCache(FunctionCache):
        """numba's cache with the fingerprint as the key (numba's pickles the cells: see the module doc)."""

        def _index_key(self, sig, codegen):
            return sig, codegen.magic_tuple(), key

        def save_overload(self, sig, data):  # code that calls ctypes itself is not cacheable: compile it quietly
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", NumbaWarning)
                super().save_overload(sig, data)

    try:
        options = sorted((k, repr(v)) for k, v in dispatcher.targetoptions.items())
        key = _digest(("jit", _function(dispatcher.py_func, set()), options))
        dispatcher._cache = StableKeyCache(dispatcher.py_func)
    except (_Uncacheable, RuntimeError):  # RuntimeError: numba finds no file to cache a function of (exec'd code)
        pass


class _Uncacheable(Exception):
    pass


def _digest(obj) -> str:
    return hashlib.sha256(repr(obj).encode()).hexdigest()


def _function(f, seen: set) -> tuple:
    """What numba compiles into a function: its code, its cells (frozen as constants) and the functions and
    globals it names (compiled in, or frozen)."""
    if id(f) in seen:  # recursion
        return ("self", f.__qualname__)
    seen = seen | {id(f)}
    code = f.__code__
    cells = tuple(_cell(c.cell_contents, seen) for c in f.__closure__ or ())
    names = tuple((n, _global(f.__globals__[n], seen)) for n in _names(code) if n in f.__globals__)
    return f.__module__, f.__qualname__, hashlib.sha256(marshal.dumps(code)).hexdigest(), cells, names


def _names(code) -> list[str]:
    names = list(code.co_names)
    for const in code.co_consts:  # nested functions and comprehensions
        if isinstance(const, types.CodeType):
            names += _names(const)
    return names


def _cell(obj, seen: set):
    """A closure cell's value, which numba freezes into the code: only kinds whose value we can name."""
    import numpy as np
    from numba.core.dispatcher import Dispatcher

    if obj is None or isinstance(obj, (bool, int, float, complex, str, bytes)):
        return type(obj).__name__, repr(obj)
    if isinstance(obj, np.generic):
        return "numpy", obj.dtype.str, repr(obj.item())
    if isinstance(obj, np.ndarray):
        return "array", obj.dtype.str, obj.shape, hashlib.sha256(np.ascontiguousarray(obj).tobytes()).hexdigest()
    if isinstance(obj, tuple):
        return tuple(_cell(x, seen) for x in obj)
    if isinstance(obj, Dispatcher):
        return "jit", _function(obj.py_func, seen), sorted((k, repr(v)) for k, v in obj.targetoptions.items())
    if isinstance(obj, types.FunctionType):
        return "function", _function(obj, seen)
    if isinstance(obj, (types.BuiltinFunctionType, type)):  # range, or numba's prange (a marker class)
        return "named", obj.__module__, obj.__qualname__
    raise _Uncacheable(type(obj))


def _global(obj, seen: set):
    """A global a function names; modules, functions and dispatchers by what they are, data by value where
    it has one (numba freezes globals at compile time too: its own cache does not look at them at all)."""
    if isinstance(obj, types.ModuleType):
        return "module", obj.__name__
    try:
        return _cell(obj, seen)
    except _Uncacheable:
        return "other", type(obj).__module__, type(obj).__qualname__, str(obj)[:200]


# -- FFCV's C helpers as symbols ---------------------------------------------------------------------------
_SYMBOLIC: dict | None = None


def _symbolic() -> dict:
    """libffcv's ctypes wrappers -> the same calls through named symbols (cacheable), where the ctypes
    signatures are the ones these were written for."""
    global _SYMBOLIC
    if _SYMBOLIC is None:
        _SYMBOLIC = _bind_symbols()
    return _SYMBOLIC


def _bind_symbols() -> dict:
    from ctypes import c_bool, c_int64, c_uint32, c_uint64, c_void_p

    import ffcv._libffcv
    import ffcv.libffcv as lib
    from llvmlite import binding
    from numba import types as nt

    expected = {"ctypes_imdecode": [c_void_p, c_uint64, c_uint32, c_uint32, c_void_p] + [c_uint32] * 6 + [c_bool] * 2,
                "ctypes_memcopy": [c_void_p, c_void_p, c_uint64], "ctypes_resize": [c_int64] * 11}
    if any(list(getattr(lib, name).argtypes) != args for name, args in expected.items()):
        return {}
    binding.load_library_permanently(ffcv._libffcv.__file__)
    u32, u64, i64 = nt.uint32, nt.uint64, nt.int64
    # pointers as 64-bit integers and C bools as 32-bit ones: the same registers in the C calling convention
    globals()["_imdecode_symbol"] = nt.ExternalFunction("imdecode", nt.int32(u64, u64, u32, u32, u64, *[u32] * 8))
    globals()["_memcpy_symbol"] = nt.ExternalFunction("my_memcpy", nt.void(u64, u64, u64))
    globals()["_resize_symbol"] = nt.ExternalFunction("resize", nt.void(*[i64] * 11))
    return {lib.imdecode: imdecode, lib.memcpy: memcpy, lib.resize_crop: resize_crop}


_imdecode_symbol = _memcpy_symbol = _resize_symbol = None  # set by _bind_symbols, before anything compiles


def imdecode(source, dst, source_height, source_width, crop_height=None, crop_width=None, offset_x=0,
             offset_y=0, scale_factor_num=1, scale_factor_denom=1, enable_crop=False, do_flip=False):
    """ffcv.libffcv.imdecode, through the symbol (compiled only)."""
    return _imdecode_symbol(source.ctypes.data, source.size, source_height, source_width, dst.ctypes.data,
                            crop_height, crop_width, offset_x, offset_y, scale_factor_num, scale_factor_denom,
                            1 if enable_crop else 0, 1 if do_flip else 0)


def memcpy(source, dest):
    """ffcv.libffcv.memcpy, through the symbol (compiled only)."""
    _memcpy_symbol(source.ctypes.data, dest.ctypes.data, source.size * source.itemsize)


def resize_crop(source, start_row, end_row, start_col, end_col, destination):
    """ffcv.libffcv.resize_crop, through the symbol (compiled only)."""
    _resize_symbol(0, source.ctypes.data, source.shape[0], source.shape[1], start_row, end_row, start_col,
                   end_col, destination.ctypes.data, destination.shape[0], destination.shape[1])
