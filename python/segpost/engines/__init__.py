"""Engines the pipeline can drive: TensorRT, PyTorch (transformers' Sam3Model), onnxruntime (the synthetic ones live in segpost.synthetic)."""
from .base import ArrayEngine, Engine, EngineError, TensorSpec
from .contract import Geometry, check_engines

__all__ = ["Engine", "ArrayEngine", "EngineError", "TensorSpec", "Geometry", "check_engines"]
