"""segpost: GPU post-processing of DETR-style segmentation engines (SAM3 under TensorRT)."""
from ._arrays import DeviceBuffer
from .encodings import CroppedMasks, LowResMasks, PackedMasks, RleMasks, decode_coco_rle, resize_lowres
from .postprocess import MaskMode, OutputKind, Postprocessor, cuda_available
from .postprocess_config import PostprocessConfig
from .preprocess import Preprocessor, YuvFrame
from .results import BatchResult, FrameResult
from .track import TrackEvent, Tracker, TrackerConfig

__version__ = "0.1.0"
__all__ = ["Postprocessor", "PostprocessConfig", "Preprocessor", "YuvFrame", "OutputKind", "MaskMode", "BatchResult", "FrameResult", "DeviceBuffer", "PackedMasks", "RleMasks",
           "CroppedMasks", "LowResMasks", "resize_lowres", "decode_coco_rle",
           "Tracker", "TrackerConfig", "TrackEvent", "cuda_available", "__version__"]
