"""A recording stand-in for the ``tensorrt`` module (TensorRT 10 runtime API), for tests.

Plans are registered by their bytes; a context runs a segpost synthetic engine on the raw
addresses bound to it (numpy memory on the CPU, device memory on CUDA), so a pipeline driven
through segpost's TensorRT adapter must bind, shape and share its buffers right to see the scene.
"""
from __future__ import annotations

import ctypes
from types import SimpleNamespace

import numpy as np

_TRT_TYPES = {np.dtype(np.float32): "FLOAT", np.dtype(np.float16): "HALF", np.dtype(np.bool_): "BOOL",
              np.dtype(np.int64): "INT64", np.dtype(np.int32): "INT32"}


def _array_at(ptr: int, shape, dtype, on_device: bool):
    nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
    if on_device:
        import cupy

        memory = cupy.cuda.UnownedMemory(ptr, nbytes, None)
        return cupy.ndarray(shape, dtype, cupy.cuda.MemoryPointer(memory, 0))
    raw = (ctypes.c_char * nbytes).from_address(ptr)
    return np.frombuffer(raw, np.uint8).view(dtype).reshape(shape)


class FakeTensorRT:
    """Use as ``TensorRTEngine(path, trt=FakeTensorRT(...))``."""

    __version__ = "10.8.0"

    class Logger:
        WARNING = 2

        def __init__(self, severity):
            self.severity = severity

    TensorIOMode = SimpleNamespace(INPUT="INPUT", OUTPUT="OUTPUT")

    def __init__(self, plans: dict, max_batch: int = 8, on_device: bool = False, version: str = "10.8.0"):
        self.plans, self.max_batch, self.on_device = plans, max_batch, on_device
        self.__version__ = version
        self.calls = []
        self.fail = set()   # method names that return False / None

    def Runtime(self, logger):  # noqa: N802 (the TensorRT name)
        fake = self

        class Runtime:
            def deserialize_cuda_engine(self, plan: bytes):
                fake.calls.append(("deserialize_cuda_engine", len(plan)))
                if "deserialize_cuda_engine" in fake.fail or plan not in fake.plans:
                    return None
                return FakeEngine(fake, fake.plans[plan])

        return Runtime()


class FakeEngine:
    def __init__(self, fake: FakeTensorRT, engine):
        self.fake, self.engine = fake, engine
        self.names = list(engine.tensors)
        self.num_io_tensors = len(self.names)
        self.device_memory_size_v2 = 1 << 20

    def get_tensor_name(self, i):
        return self.names[i]

    def get_tensor_shape(self, name):
        return list(self.engine.tensors[name].shape)

    def get_tensor_dtype(self, name):
        return SimpleNamespace(name=_TRT_TYPES[self.engine.tensors[name].dtype])

    def get_tensor_mode(self, name):
        return "INPUT" if self.engine.tensors[name].is_input else "OUTPUT"

    def get_tensor_profile_shape(self, name, profile):
        spec = self.engine.tensors[name]
        return spec.with_batch(1), spec.with_batch(self.fake.max_batch), spec.with_batch(self.fake.max_batch)

    def create_execution_context(self):
        return None if "create_execution_context" in self.fake.fail else FakeContext(self)


class FakeContext:
    def __init__(self, owner: FakeEngine):
        self.owner, self.addresses, self.batch = owner, {}, {}

    def set_input_shape(self, name, shape):
        fake = self.owner.fake
        fake.calls.append(("set_input_shape", name, tuple(shape)))
        if "set_input_shape" in fake.fail or shape[0] > fake.max_batch:
            return False
        self.batch[name] = shape[0]
        return True

    def set_tensor_address(self, name, ptr):
        self.owner.fake.calls.append(("set_tensor_address", name, ptr))
        self.addresses[name] = ptr
        return "set_tensor_address" not in self.owner.fake.fail

    def execute_async_v3(self, stream):
        fake, engine = self.owner.fake, self.owner.engine
        fake.calls.append(("execute_async_v3", stream))
        if "execute_async_v3" in fake.fail or set(self.addresses) != set(engine.tensors):
            return False
        (batch,) = set(self.batch.values())
        tensors = {name: _array_at(self.addresses[name], spec.with_batch(batch), spec.dtype, fake.on_device)
                   for name, spec in engine.tensors.items()}
        if fake.on_device:
            from segpost._arrays import cupy_stream

            with cupy_stream(stream):
                engine.compute(tensors)
        else:
            engine.compute(tensors)
        return True


# The users' engines (background.md, "The engines"): the contract's names but for the presence
# output, and no prompt-mask input.
USERS_NAMES = {"presence_logits": "presence"}


class RenamedEngine:
    """A synthetic engine as another exporter would have written it, for FakeTensorRT's plans:
    tensors renamed (contract name -> its name) and some left out (a decoder without prompt_mask
    computes as if every token were valid; one without presence_logits just does not give it)."""

    def __init__(self, engine, names: dict, without=()):
        import dataclasses

        self.engine, self.without = engine, tuple(without)
        self.own = {n: names.get(n, n) for n in engine.tensors if n not in self.without}
        self.tensors = {own: dataclasses.replace(engine.tensors[n], name=own) for n, own in self.own.items()}

    def compute(self, tensors):
        xp = self.engine.xp
        batch = next(iter(tensors.values())).shape[0]
        full = {n: tensors[own] for n, own in self.own.items()}
        for name in self.without:   # what the engine does not take or give: all valid, or scratch
            spec = self.engine.tensors[name]
            full[name] = (xp.ones if name == "prompt_mask" else xp.zeros)(spec.with_batch(batch), spec.dtype)
        self.engine.compute(full)
