"""Why GPU tests cannot run here (None when they can)."""
from segpost import _ext


def _cuda_skip_reason():
    if not _ext.built_with_cuda():
        return "segpost was built without CUDA (no nvcc at install time)"
    if _ext.cuda_device_count() == 0:
        return "no CUDA device visible (no driver or no GPU on this machine)"
    try:
        import cupy  # noqa: F401
    except ImportError:
        return "CuPy is not installed (pip install segpost[cuda13] or [cuda12])"
    return None


CUDA_SKIP_REASON = _cuda_skip_reason()
