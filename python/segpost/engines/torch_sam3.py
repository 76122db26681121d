"""SAM3 in PyTorch (transformers' Sam3Model) as the two engines of the contract.

For users without TensorRT, and segpost's realistic compute load in benchmarks. The vision
encoder is ``Sam3Model.get_vision_features``; the decoder is ``Sam3Model.forward`` given those
vision embeddings and a class's text embeddings. Both read the bound input buffers in place
(zero copy through ``__cuda_array_interface__``) and write the bound output buffers, on the
caller's stream. Real weights come from a local directory; without one the weights are random
(right shapes and compute, meaningless detections).

``compile="default"`` or ``"max-autotune"`` runs both stages through torch.compile (and
``cuda_graphs=True`` through CUDA graphs): compiled once, when the pipeline has bound its buffers
(``prepare``), for the batch of those buffers. Rounds with fewer cameras run that same batch (the
rows past the live cameras are computed and ignored), so nothing ever recompiles; compiled
kernels are cached in ``cache_dir`` and a restart reuses them.
"""
from __future__ import annotations

import os
import sys
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from .base import EngineError, TensorSpec
from .registry import BackendRequest, register_backend
from .torch_stage import TorchStage
from .contract import DECODER_INPUTS, DECODER_OUTPUTS, FPN_TENSORS

PROMPT_LENGTH = 32
COMPILE_CHOICES = ("off", "default", "max-autotune")


def torch_compile_mode(compile: str, cuda_graphs: bool) -> Optional[str]:
    """torch.compile's mode for segpost's (compile, cuda_graphs) settings; None: eager."""
    if compile not in COMPILE_CHOICES:
        raise EngineError(f"compile must be one of {COMPILE_CHOICES}, got {compile!r}")
    if compile == "off":
        if cuda_graphs:
            raise EngineError("cuda_graphs needs compile 'default' or 'max-autotune' (CUDA graphs of eager "
                              "transformers code are not captured)")
        return None
    if compile == "default":
        return "reduce-overhead" if cuda_graphs else "default"
    return "max-autotune" if cuda_graphs else "max-autotune-no-cudagraphs"


def default_cache_dir() -> str:
    """Where compiled kernels are kept between runs (TORCHINDUCTOR_CACHE_DIR, when not set)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "segpost", "torch-compile")


def _find(config: Any, key: str) -> Any:
    stack = [config.to_dict() if hasattr(config, "to_dict") else config]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if key in node and not isinstance(node[key], dict):
                return node[key]
            stack.extend(node.values())
    raise EngineError(f"Sam3Config has no {key!r}")


class Sam3Torch:
    """Loads (or randomly initializes) one Sam3Model and exposes ``vision_encoder`` and ``decoder``."""

    def __init__(self, path: Optional[str] = None, *, dtype: Any = np.float16, device: str = "cuda",
                 config: Any = None, prompt_length: int = PROMPT_LENGTH, seed: int = 0, compile: str = "off",
                 cuda_graphs: bool = False, cache_dir: Optional[str] = None,
                 log: Callable[[str], None] = lambda m: print(m, file=sys.stderr, flush=True)):
        self.compile_mode = torch_compile_mode(compile, cuda_graphs)
        self.cuda_graphs = cuda_graphs
        self.log = log
        try:
            import torch
            from transformers import Sam3Config, Sam3Model
        except ImportError as exc:
            raise EngineError("the PyTorch SAM3 backend needs torch and transformers >= 5 (pip install segpost[torch])") from exc
        from transformers.models.sam3.modeling_sam3 import Sam3VisionEncoderOutput

        self.torch, self.path = torch, path
        self._tokenizer = None
        self._vision_output_type = Sam3VisionEncoderOutput
        self.dtype = np.dtype(dtype)
        torch_dtype = {np.dtype(np.float16): torch.float16, np.dtype(np.float32): torch.float32}.get(self.dtype)
        if torch_dtype is None:
            raise EngineError(f"dtype must be float16 or float32, got {self.dtype}")
        self.device = device
        torch.manual_seed(seed)
        if path is not None:
            self.model = Sam3Model.from_pretrained(path, dtype=torch_dtype)
        else:
            with torch.device(device):
                self.model = Sam3Model(config if config is not None else Sam3Config())
        self.model = self.model.to(device=device, dtype=torch_dtype).eval()
        image_size = int(_find(self.model.config, "image_size"))
        with torch.inference_mode():
            vision = self.model.get_vision_features(
                pixel_values=torch.zeros(1, 3, image_size, image_size, device=device, dtype=torch_dtype))
            self.prompt_width = int(self.model.text_projection.out_features)
            probe = torch.zeros(1, prompt_length, self.prompt_width, device=device, dtype=torch_dtype)
            probe_mask = torch.ones(1, prompt_length, device=device, dtype=torch.long)
            # transformers releases differ: text_embeds is a tensor, or get_text_features' output object.
            self._wrap_text = False
            try:
                out = self.model(vision_embeds=vision, text_embeds=probe, attention_mask=probe_mask)
            except AttributeError:
                self._wrap_text = True
                out = self.model(vision_embeds=vision, text_embeds=self.text_embeds(probe), attention_mask=probe_mask)
        fpn = list(vision.fpn_hidden_states[:3]) + [vision.fpn_position_encoding[2]]
        shapes = {"images": (3, image_size, image_size),
                  **{name: tuple(t.shape[1:]) for name, t in zip(FPN_TENSORS, fpn)},
                  "prompt_features": (prompt_length, self.prompt_width), "prompt_mask": (prompt_length,),
                  "pred_masks": tuple(out.pred_masks.shape[1:]), "pred_boxes": tuple(out.pred_boxes.shape[1:]),
                  "pred_logits": tuple(out.pred_logits.shape[1:]), "presence_logits": (1,)}
        dtypes = {"prompt_mask": np.dtype(np.bool_)}

        def specs(inputs: Sequence[str], outputs: Sequence[str]) -> Dict[str, TensorSpec]:
            return {n: TensorSpec(n, (-1,) + shapes[n], dtypes.get(n, self.dtype), n in inputs) for n in list(inputs) + list(outputs)}

        self.vision_encoder = _TorchStage("sam3 vision encoder (torch)", specs(("images",), FPN_TENSORS), self, self._encode)
        self.decoder = _TorchStage("sam3 decoder (torch)", specs(DECODER_INPUTS, DECODER_OUTPUTS), self, self._decode)
        if self.compile_mode is not None:
            os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", cache_dir or default_cache_dir())
            for stage in (self.vision_encoder, self.decoder):
                stage.compiled = torch.compile(stage.run_tensors, mode=self.compile_mode, dynamic=False)

    def parameter_bytes(self) -> int:
        return sum(p.numel() * p.element_size() for p in self.model.parameters())

    def vision_features(self, images: Any) -> Tuple[Any, Any, Any, Any]:
        """images [B,3,S,S] -> (fpn_feat_0, fpn_feat_1, fpn_feat_2, fpn_pos_2): the vision encoder."""
        vision = self.model.get_vision_features(pixel_values=images)
        return (*vision.fpn_hidden_states[:3], vision.fpn_position_encoding[2])

    def detect(self, fpn_feat_0: Any, fpn_feat_1: Any, fpn_feat_2: Any, fpn_pos_2: Any, prompt_features: Any,
               prompt_mask: Any) -> Tuple[Any, Any, Any, Any]:
        """The decoder: -> (pred_masks, pred_boxes, pred_logits, presence_logits [B,1])."""
        # forward() drops the last FPN level and takes the position encoding of the level before it.
        levels = (fpn_feat_0, fpn_feat_1, fpn_feat_2, fpn_feat_2)
        vision = self._vision_output_type(fpn_hidden_states=levels, fpn_position_encoding=(fpn_pos_2,) * 4)
        out = self.model(vision_embeds=vision, text_embeds=self.text_embeds(prompt_features),
                         attention_mask=prompt_mask.long())
        return out.pred_masks, out.pred_boxes, out.pred_logits, out.presence_logits.reshape(-1, 1)

    def _encode(self, t: Dict[str, Any]) -> None:
        for name, value in zip(FPN_TENSORS, self.vision_features(t["images"])):
            t[name].copy_(value)

    def text_embeds(self, features: Any) -> Any:
        """Prompt features [B, P, D] in the form this transformers release's forward() takes."""
        if not self._wrap_text:
            return features
        from transformers.modeling_outputs import BaseModelOutputWithPooling

        return BaseModelOutputWithPooling(last_hidden_state=features, pooler_output=features)

    def _decode(self, t: Dict[str, Any]) -> None:
        outputs = self.detect(*(t[name] for name in DECODER_INPUTS))
        for name, value in zip(DECODER_OUTPUTS, outputs):
            t[name].copy_(value)

    def text_prompts(self, names: Sequence[str]) -> List[Tuple[str, np.ndarray, np.ndarray]]:
        """(name, features [L, D], mask [L]) per class, from the text encoder; once, at start-up."""
        torch = self.torch
        prompts = []
        for name in names:
            ids, mask = self.token_ids(name)
            with torch.inference_mode():
                out = self.model.get_text_features(input_ids=ids.to(self.device), attention_mask=mask.to(self.device),
                                                   return_dict=True)
            features = out.pooler_output if hasattr(out, "pooler_output") else out[1]
            prompts.append((name, features[0].float().cpu().numpy(), mask[0].bool().numpy()))
        return prompts

    def token_ids(self, name: str) -> Tuple[Any, Any]:
        """A class name's token ids and attention mask, [1, L] each. With a weights directory
        holding the tokenizer, the name is tokenized; with random weights, it gets fixed
        pseudo-random ids (deterministic in the name), as the reference comparisons use too."""
        torch = self.torch
        if self.path is not None:
            if self._tokenizer is None:
                from transformers import AutoProcessor

                self._tokenizer = AutoProcessor.from_pretrained(self.path)
            tokens = self._tokenizer(text=name, return_tensors="pt", padding="max_length", max_length=PROMPT_LENGTH)
            return tokens["input_ids"], tokens["attention_mask"]
        generator = torch.Generator().manual_seed(sum(map(ord, name)))
        ids = torch.randint(1, 1000, (1, PROMPT_LENGTH), generator=generator)
        mask = torch.zeros(1, PROMPT_LENGTH, dtype=torch.long)
        mask[:, : 2 + len(name.split())] = 1
        return ids, mask


class _TorchStage(TorchStage):
    """One half of Sam3Model, eager or compiled."""

    def __init__(self, name: str, specs: Dict[str, TensorSpec], owner: Sam3Torch, run):
        super().__init__(name, specs, owner.device if owner.device == "cpu" else "cuda")
        self._owner, self._run = owner, run
        self.compiled: Optional[Callable[..., None]] = None

    @property
    def static_batch(self) -> bool:
        return self.compiled is not None

    @property
    def static_addresses(self) -> bool:
        return self.compiled is not None and self._owner.cuda_graphs

    def memory_bytes(self) -> int:
        # Both stages share one model: the encoder reports it (on CUDA: torch's allocator, weights included).
        if "images" not in self._specs:
            return 0
        torch = self._owner.torch
        return torch.cuda.memory_reserved() if self.device == "cuda" else self._owner.parameter_bytes()

    def run_tensors(self, *tensors: Any) -> None:
        """The stage on torch tensors in the order of its specs (what torch.compile compiles)."""
        self._run(dict(zip(self._specs, tensors)))

    def compute(self, views: Dict[str, Any]) -> None:
        if self.compiled is None:
            self._run(views)
        else:
            self.compiled(*(views[n] for n in self._specs))

    def prepare(self) -> None:
        """Compiles (and for CUDA graphs, records) the stage at the bound buffers' batch, showing
        progress; a later start finds the kernels in the cache."""
        if self.compiled is None:
            return
        missing = [n for n in self._specs if n not in self._bound]
        if missing:
            raise EngineError(f"{self.name}: bind every tensor before prepare(); missing {missing}")
        log, started, done = self._owner.log, time.perf_counter(), threading.Event()
        batch = next(iter(self.full_batch().values())).shape[0]
        log(f"segpost: compiling the {self.name} for batch {batch} (torch.compile mode={self._owner.compile_mode}; "
            f"cache {os.environ.get('TORCHINDUCTOR_CACHE_DIR')})")

        def ticker():
            while not done.wait(15.0):
                log(f"segpost: ... still compiling the {self.name}, {time.perf_counter() - started:.0f} s")

        thread = threading.Thread(target=ticker, daemon=True)
        thread.start()
        try:
            stream = self._owner.torch.cuda.current_stream().cuda_stream if self.device == "cuda" else 0
            for _ in range(3):   # compile; CUDA graphs warm up, then record
                self.execute({}, stream)
            if self.device == "cuda":
                self._owner.torch.cuda.synchronize()
        finally:
            done.set()
        log(f"segpost: {self.name} compiled in {time.perf_counter() - started:.1f} s")


@register_backend("torch")
def build_torch_backend(request: BackendRequest):
    """Config backend "torch": ``weights`` (a local Sam3Model directory; omitted: random weights),
    ``dtype``, ``compile``, ``cuda_graphs``, ``compile_cache``; prompts from the class names."""
    raw = request.raw
    weights = raw.get("weights")
    sam3 = Sam3Torch(request.path(weights) if weights else None, dtype=raw.get("dtype", "float16"),
                     device=request.device, compile=raw.get("compile", "off"),
                     cuda_graphs=bool(raw.get("cuda_graphs", False)), cache_dir=raw.get("compile_cache"))
    return sam3.vision_encoder, sam3.decoder, sam3.text_prompts(list(raw["classes"]))
