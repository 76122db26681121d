"""Synthetic SAM3-shaped engines that really look at the pixels (numpy on the CPU, CuPy on the GPU).

The vision "encoder" box-filters the normalized images down into channels 0-2 of fpn_feat_0,
then halves them into fpn_feat_1 and fpn_feat_2. The "decoder" reads the class's colour
template from prompt_features (see ``prompt_for_class``) and segments every instance of that
colour family (scene.py): query j holds the mask logits of shade j, logit = gain * (alpha - 1/2)
where alpha is how much of the cell the object covers, so the 0-level set of the resized logits
is the object's edge. Boxes come from the masks, presence from fpn_feat_2. Each engine can add a
busy time per call to stand in for a real engine's compute, and fail or hang on chosen calls
(``Faults``: the fault-injection tests' engine exceptions and hung engines).

For tracking (synthetic/tracking.py) the decoder can behave more like a DETR: ``permute_slots``
scatters the instances over random query slots on every call (slots are not identities), and a
prompt that states its class's full object area (``prompt_for_class(..., full_area=)``) makes the
score fall with the visible share of the object, with ``score_noise`` jitter on top.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Dict, FrozenSet, Optional, Tuple

import numpy as np

from .._arrays import cupy_stream
from ..engines.base import ArrayEngine, EngineError, TensorSpec
from ..engines.registry import BackendRequest, register_backend
from . import scene

MASK_GAIN = 8.0      # logits span +-4 over an object's edge
LOGIT_ON, LOGIT_OFF = 6.0, -6.0
MIN_CELLS = 2        # an instance needs this many positive mask cells to be reported
AREA_CHANNEL = 6     # prompt token 0's channel holding the class's full object area (0: scores stay LOGIT_ON)
FULL_VIEW = 0.85     # a detector is as sure of an object 85% visible as of a whole one
_SPIN_SOURCE = r"""
extern "C" __global__ void spin(unsigned long long ns) {
    unsigned long long start, now;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(start));
    do { asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(now)); } while (now - start < ns);
}
"""


@dataclass(frozen=True)
class SyntheticGeometry:
    """Tensor sizes. The default is SAM3's; ``small()`` is for CPU tests and demos."""

    image_size: int = 1008
    mask_size: int = 288       # fpn_feat_0 and pred_masks; fpn_feat_1/2 are 1/2 and 1/4 of it
    channels: int = 256
    num_queries: int = 200
    prompt_length: int = 32
    prompt_width: int = 256

    @classmethod
    def small(cls) -> "SyntheticGeometry":
        return cls(image_size=252, mask_size=72, channels=4, num_queries=16, prompt_length=4, prompt_width=8)

    def __post_init__(self):
        if self.mask_size % 4 or self.channels < 3 or self.num_queries < scene.MAX_INSTANCES or self.prompt_width < 6:
            raise ValueError(f"unusable synthetic geometry {self}: mask_size must be a multiple of 4, channels >= 3, "
                             f"num_queries >= {scene.MAX_INSTANCES}, prompt_width >= 6")

    @property
    def feature_sizes(self) -> Tuple[int, int, int]:
        return self.mask_size, self.mask_size // 2, self.mask_size // 4


def prompt_for_class(class_index: int, geometry: SyntheticGeometry,
                     full_area: Optional[float] = None) -> Tuple[np.ndarray, np.ndarray]:
    """The synthetic "text encoder": (features [P, D] float32, mask [P] bool) for a scene class.

    Token 0 holds the class's template (channels 0-2, level / 255, 0 for the shade channel)
    and a one-hot of its shade channel (3-5); the other tokens are padding. ``full_area``, the
    area of a whole object of the class as a fraction of the frame, goes in channel 6: the
    decoder then scores each instance by how much of it is visible.
    """
    if not 0 <= class_index < scene.MAX_CLASSES:
        raise ValueError(f"the synthetic scene has classes 0 to {scene.MAX_CLASSES - 1}, got {class_index}")
    if full_area is not None and not (0 < full_area <= 1 and geometry.prompt_width > AREA_CHANNEL):
        raise ValueError(f"full_area must be in (0, 1] and needs prompt_width > {AREA_CHANNEL}, got {full_area} "
                         f"with prompt_width {geometry.prompt_width}")
    features = np.zeros((geometry.prompt_length, geometry.prompt_width), np.float32)
    for channel, level in enumerate(scene.CLASS_TEMPLATES[class_index]):
        if level is None:
            features[0, 3 + channel] = 1.0
        else:
            features[0, channel] = level / 255.0
    if full_area is not None:
        features[0, AREA_CHANNEL] = full_area
    mask = np.zeros(geometry.prompt_length, np.bool_)
    mask[0] = True
    return features, mask


def _area_matrix(out_size: int, in_size: int) -> np.ndarray:
    """[out, in] weights of a box filter (cv2.INTER_AREA for downscaling), rows summing to 1."""
    scale = in_size / out_size
    edges = np.arange(out_size + 1) * scale
    lo, hi = edges[:-1, None], edges[1:, None]
    pixels = np.arange(in_size)[None, :]
    overlap = np.clip(np.minimum(hi, pixels + 1) - np.maximum(lo, pixels), 0, None)
    return (overlap / scale).astype(np.float32)


ROLES = ("vision_encoder", "decoder")
INJECTED = "injected fault"   # in the message of every exception Faults raises


@dataclass(frozen=True)
class Faults:
    """Failures injected into the synthetic engines (a config's ``"faults"``), counted per engine
    from its first call (0) in this process:

    - ``raise``: [[call, "vision_encoder" | "decoder"], ...]: that engine's call raises EngineError
      (what a real engine's failed execution raises) before computing anything;
    - ``hang``: [[call, seconds], ...]: the vision encoder's call sleeps that long first (a hung
      engine, for the watchdog and the fleet's heartbeat);
    - ``raise_probability`` with ``seed``: every call of either engine also raises with that
      probability, drawn from a generator per engine seeded with ``seed`` (a run replays exactly).
    """

    raises: Dict[str, FrozenSet[int]]
    hangs: Dict[int, float]
    raise_probability: float = 0.0
    seed: int = 0

    @classmethod
    def from_value(cls, value: Any, where: str) -> "Faults":
        """From the config's value; ValueError (one line, naming `where`) when it is malformed."""
        usage = ('{"raise": [[call, "vision_encoder"|"decoder"], ...], "hang": [[call, seconds], ...], '
                 '"raise_probability": p, "seed": n}')
        if not isinstance(value, dict) or set(value) - {"raise", "hang", "raise_probability", "seed"}:
            raise ValueError(f"{where} must be {usage}, got {value!r}")
        raises: Dict[str, set] = {role: set() for role in ROLES}
        hangs: Dict[int, float] = {}
        try:
            for call, role in value.get("raise", []):
                if not _count(call) or role not in ROLES:
                    raise ValueError
                raises[role].add(call)
            for call, seconds in value.get("hang", []):
                if not _count(call) or isinstance(seconds, bool) or not isinstance(seconds, (int, float)) \
                        or not 0 < seconds <= 3600:
                    raise ValueError
                hangs[call] = float(seconds)
            p, seed = value.get("raise_probability", 0.0), value.get("seed", 0)
            if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 <= p <= 1 or not _count(seed):
                raise ValueError
        except (TypeError, ValueError):
            raise ValueError(f"{where} must be {usage} (calls and seed ints >= 0, seconds in (0, 3600], "
                             f"p in [0, 1]), got {value!r}") from None
        return cls({role: frozenset(calls) for role, calls in raises.items()}, hangs, float(p), seed)

    def before_call(self, role: str, call: int, rng: np.random.Generator) -> None:
        """Called by an engine before its call number `call` computes: hang and/or raise."""
        if role == "vision_encoder" and call in self.hangs:
            time.sleep(self.hangs[call])
        if call in self.raises[role] or (self.raise_probability and rng.random() < self.raise_probability):
            raise EngineError(f"synthetic {role.replace('_', ' ')}: {INJECTED} at call {call} (config \"faults\")")


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


class _Synthetic(ArrayEngine):
    def __init__(self, name: str, specs: Dict[str, TensorSpec], device: str, busy_ms: float,
                 faults: Optional[Faults] = None, role: str = ""):
        if device not in ("cuda", "cpu"):
            raise ValueError(f"device must be 'cuda' or 'cpu', got {device!r}")
        if busy_ms < 0:
            raise ValueError(f"busy_ms must be >= 0, got {busy_ms}")
        super().__init__(name, specs, device)
        self.busy_ms = float(busy_ms)
        self.faults, self.role, self.calls = faults, role, 0
        if faults is not None:   # one stream per engine, so that one engine's draws do not shift the other's
            self._fault_rng = np.random.default_rng([faults.seed, ROLES.index(role)])
        if device == "cuda":
            import cupy

            self.xp = cupy
            self._spin = cupy.RawKernel(_SPIN_SOURCE, "spin")
        else:
            self.xp = np

    def execute(self, tensors: Dict[str, Any], stream: int) -> None:
        call, self.calls = self.calls, self.calls + 1
        if self.faults is not None:
            self.faults.before_call(self.role, call, self._fault_rng)
        if self.device == "cuda":
            with cupy_stream(stream):
                self.compute(tensors)
                if self.busy_ms:
                    self._spin((1,), (1,), (np.uint64(self.busy_ms * 1e6),))
        else:
            deadline = time.perf_counter() + self.busy_ms / 1e3
            self.compute(tensors)
            while time.perf_counter() < deadline:
                time.sleep(max(0.0, min(deadline - time.perf_counter(), 0.001)))

    def compute(self, tensors: Dict[str, Any]) -> None:
        raise NotImplementedError


def _specs(geometry: SyntheticGeometry, dtype: Any, names_in, names_out) -> Dict[str, TensorSpec]:
    s0, s1, s2 = geometry.feature_sizes
    c, q = geometry.channels, geometry.num_queries
    shapes = {
        "images": (-1, 3, geometry.image_size, geometry.image_size),
        "fpn_feat_0": (-1, c, s0, s0), "fpn_feat_1": (-1, c, s1, s1), "fpn_feat_2": (-1, c, s2, s2),
        "fpn_pos_2": (-1, c, s2, s2),
        "prompt_features": (-1, geometry.prompt_length, geometry.prompt_width),
        "prompt_mask": (-1, geometry.prompt_length),
        "pred_masks": (-1, q, s0, s0), "pred_boxes": (-1, q, 4), "pred_logits": (-1, q), "presence_logits": (-1, 1),
    }
    dtypes = {"prompt_mask": np.dtype(np.bool_), "prompt_features": np.dtype(np.float32)}
    return {n: TensorSpec(n, shapes[n], dtypes.get(n, np.dtype(dtype)), n in names_in) for n in names_in + names_out}


class SyntheticVisionEncoder(_Synthetic):
    def __init__(self, geometry: SyntheticGeometry = SyntheticGeometry(), *, device: str = "cpu",
                 dtype: Any = np.float16, busy_ms: float = 0.0, faults: Optional[Faults] = None):
        super().__init__("synthetic vision encoder", _specs(geometry, dtype, ("images",),
                                                             ("fpn_feat_0", "fpn_feat_1", "fpn_feat_2", "fpn_pos_2")),
                         device, busy_ms, faults, "vision_encoder")
        s0, s1, s2 = geometry.feature_sizes
        xp = self.xp
        self._down0 = xp.asarray(_area_matrix(s0, geometry.image_size))
        self._down1 = xp.asarray(_area_matrix(s1, s0))
        self._down2 = xp.asarray(_area_matrix(s2, s1))

    def compute(self, t: Dict[str, Any]) -> None:
        rgb = (t["images"].astype(np.float32) + 1.0) * 0.5             # pixel / 255, RGB
        level0 = self._down0 @ rgb @ self._down0.T
        level1 = self._down1 @ level0 @ self._down1.T
        for name, level in (("fpn_feat_0", level0), ("fpn_feat_1", level1),
                            ("fpn_feat_2", self._down2 @ level1 @ self._down2.T)):
            t[name][:, :3] = level
            t[name][:, 3:] = 0
        t["fpn_pos_2"][...] = 0


class SyntheticDecoder(_Synthetic):
    """See the module's doc. ``permute_slots``: every call puts each row's instances in a fresh
    random choice of query slots; ``score_noise``: uniform jitter of that size on visibility
    scores. Both draw from one generator seeded with ``seed``: a run replays exactly."""

    def __init__(self, geometry: SyntheticGeometry = SyntheticGeometry(), *, device: str = "cpu",
                 dtype: Any = np.float16, busy_ms: float = 0.0, permute_slots: bool = False,
                 score_noise: float = 0.0, seed: int = 0, faults: Optional[Faults] = None):
        super().__init__("synthetic decoder", _specs(
            geometry, dtype, ("fpn_feat_0", "fpn_feat_1", "fpn_feat_2", "fpn_pos_2", "prompt_features", "prompt_mask"),
            ("pred_masks", "pred_boxes", "pred_logits", "presence_logits")), device, busy_ms, faults, "decoder")
        if not 0 <= score_noise < 0.5:
            raise ValueError(f"score_noise must be in [0, 0.5), got {score_noise}")
        self._slots = self.xp.arange(scene.MAX_INSTANCES).reshape(1, -1, 1, 1)
        self.permute_slots, self.score_noise = bool(permute_slots), float(score_noise)
        self._rng = np.random.default_rng(seed)

    def _coverage(self, features: Any, template: Any, shade_channel: Any) -> Any:
        """How much of each cell the class's colour covers (alpha), from the non-shade channels."""
        xp, bg = self.xp, scene.BACKGROUND / 255.0
        rgb = features[:, :3].astype(np.float32)
        alpha = (rgb - bg) / (template - bg)[:, :, None, None]
        alpha = xp.where(shade_channel[:, :, None, None] > 0.5, xp.inf, alpha)
        return rgb, alpha.min(axis=1)

    def compute(self, t: Dict[str, Any]) -> None:
        xp, bg = self.xp, scene.BACKGROUND / 255.0
        prompt = t["prompt_features"][:, 0].astype(np.float32)
        template, shade_channel = prompt[:, 0:3], prompt[:, 3:6]
        rgb, alpha = self._coverage(t["fpn_feat_0"], template, shade_channel)
        shade_value = (rgb * shade_channel[:, :, None, None]).sum(axis=1)
        shade = (shade_value - (1.0 - alpha) * bg) / xp.maximum(alpha, 0.2) * 255.0
        instance = xp.rint((shade - scene.SHADES[0]) / (scene.SHADES[1] - scene.SHADES[0]))
        logits = xp.where(instance[:, None] == self._slots, MASK_GAIN * (alpha[:, None] - 0.5), -0.5 * MASK_GAIN)
        positive = logits > 0
        size = positive.shape[-1]
        present = positive.sum(axis=(2, 3)) >= MIN_CELLS
        rows, cols = positive.any(axis=3), positive.any(axis=2)
        box = xp.stack([cols.argmax(axis=2), rows.argmax(axis=2),
                        size - cols[..., ::-1].argmax(axis=2), size - rows[..., ::-1].argmax(axis=2)], axis=-1)
        full_area = prompt[:, AREA_CHANNEL] if prompt.shape[1] > AREA_CHANNEL else xp.zeros(len(prompt), np.float32)
        scores = xp.where(present, self._score_logits(positive.sum(axis=(2, 3)), full_area, size), LOGIT_OFF)
        self._write(t, logits, xp.where(present[..., None], box / size, 0.0), scores)
        _, coarse = self._coverage(t["fpn_feat_2"], template, shade_channel)
        t["presence_logits"][:, 0] = xp.where((coarse > 0.35).any(axis=(1, 2)), LOGIT_ON, LOGIT_OFF)

    def _score_logits(self, cells: Any, full_area: Any, size: int) -> Any:
        """[B, n] score logits: LOGIT_ON, or with a full area in the prompt, 0.05 .. 0.95 rising
        with the visible share of the object (saturating at FULL_VIEW), plus the noise."""
        xp = self.xp
        visible = cells / xp.maximum(full_area[:, None] * size * size, 1e-6)
        p = 0.05 + 0.9 * xp.clip(visible / FULL_VIEW, 0.0, 1.0)
        if self.score_noise:
            p = p + xp.asarray(self._rng.uniform(-self.score_noise, self.score_noise, p.shape), dtype=p.dtype)
        p = xp.clip(p, 0.01, 0.99)
        return xp.where(full_area[:, None] > 0, xp.log(p / (1.0 - p)), LOGIT_ON)

    def _write(self, t: Dict[str, Any], logits: Any, boxes: Any, scores: Any) -> None:
        """Instance j's outputs into query slot j, or, with permute_slots, into a random slot per row."""
        xp, n = self.xp, scene.MAX_INSTANCES
        if not self.permute_slots:
            t["pred_masks"][:, :n], t["pred_boxes"][:, :n], t["pred_logits"][:, :n] = logits, boxes, scores
            t["pred_masks"][:, n:], t["pred_boxes"][:, n:], t["pred_logits"][:, n:] = -0.5 * MASK_GAIN, 0, LOGIT_OFF
            return
        rows, queries = logits.shape[0], t["pred_logits"].shape[1]
        slots = xp.asarray(np.stack([self._rng.permutation(queries)[:n] for _ in range(rows)]))
        t["pred_masks"][...], t["pred_boxes"][...], t["pred_logits"][...] = -0.5 * MASK_GAIN, 0, LOGIT_OFF
        row = xp.arange(rows)[:, None]
        t["pred_masks"][row, slots], t["pred_boxes"][row, slots], t["pred_logits"][row, slots] = logits, boxes, scores


@register_backend("synthetic", keys=("startup_s", "faults"))
def build_synthetic_backend(request: BackendRequest):
    """Config backend "synthetic": class names only (scene.py's colour classes); ``busy_ms``
    [encoder, decoder] and ``startup_s`` stand in for a real engine's compute and start-up,
    ``faults`` makes the engines fail or hang on chosen calls (Faults)."""
    raw, device = request.raw, request.device
    classes = raw["classes"]
    if len(classes) > scene.MAX_CLASSES:
        raise request.error(f"the synthetic backend knows {scene.MAX_CLASSES} colour classes, got {len(classes)}")
    geometry = SyntheticGeometry() if device == "cuda" else SyntheticGeometry.small()
    busy = raw.get("busy_ms", [0.0, 0.0])
    startup = raw.get("startup_s", 0.0)
    if isinstance(startup, bool) or not isinstance(startup, (int, float)) or not 0 <= startup <= 3600:
        raise request.error(f"startup_s must be seconds in [0, 3600], got {startup!r}")
    faults = Faults.from_value(raw["faults"], f"{request.where}: faults") if "faults" in raw else None
    time.sleep(startup)
    vision_encoder = SyntheticVisionEncoder(geometry, device=device, busy_ms=busy[0], faults=faults)
    decoder = SyntheticDecoder(geometry, device=device, busy_ms=busy[1], faults=faults)
    return vision_encoder, decoder, [(name, *prompt_for_class(i, geometry)) for i, name in enumerate(classes)]
