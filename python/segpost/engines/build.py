"""TensorRT engines from the two ONNX graphs, into a folder the pipeline loads. Builders:
trtexec (default); ``--builder tensorrt``, TensorRT's Python builder API; ``--builder tensorrt-rtx``,
TensorRT-RTX's (RTX GPUs: Ampere, Ada, Blackwell; strongly typed, so give it the float16 graphs of
``engines/export_onnx.py --dtype float16`` for half-precision engines).

    python -m segpost.engines.build ONNX_DIR OUT_ROOT --class person=prompts/person.npz ...

writes OUT_ROOT/b{B}_q{Q}/ (b{B}_c{K}_q{Q}/ with --classes-per-call K) with vision-encoder.engine,
decoder.engine (built as a matched pair: same precision; the decoder's batch profile reaches
B x K, K classes per call), the prompt files and pipeline.json for ``segpost run``.
Max batch B sets the engines' activation memory: the users measured ~6.7 GB of engine memory at
B = 8 for SAM3; a smaller B saves VRAM but caps the cameras per round at B. K > 1 runs K classes
in one decoder call (faster) for K times the decoder's activations and pred_masks.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from .base import EngineError
from .contract import DECODER_INPUTS, OPTIONAL, VISION_INPUTS
from .pipeline_file import CONFIG_FILE, engine_folder, write_pipeline_config
from .sam3_onnx import DECODER_FILE, VISION_ENCODER_FILE, onnx_tensor_shapes
from .tensorrt import TENSORRT, TENSORRT_RTX, import_tensorrt

VISION_ENCODER_ENGINE = "vision-encoder.engine"
DECODER_ENGINE = "decoder.engine"
BUILDERS = ("trtexec", "tensorrt", "tensorrt-rtx", "aoti")


# (ONNX file, engine file, the inputs that get a batch profile, whether its batch is B x K) of the pair.
GRAPHS = ((VISION_ENCODER_FILE, VISION_ENCODER_ENGINE, VISION_INPUTS, False),
          (DECODER_FILE, DECODER_ENGINE, DECODER_INPUTS, True))


def graph_batches(max_batch: int, opt_batch: Optional[int], classes_per_call: int, per_class: bool) -> tuple:
    """(max, opt) batch of one graph: the decoder's are K times the cameras'."""
    if not isinstance(classes_per_call, int) or classes_per_call < 1:
        raise ValueError(f"classes_per_call must be a positive int, got {classes_per_call!r}")
    factor = classes_per_call if per_class else 1
    return max_batch * factor, None if opt_batch is None else opt_batch * factor

Profile = Dict[str, Tuple[Tuple[int, ...], Tuple[int, ...], Tuple[int, ...]]]


def profile_shapes(onnx_path: str, inputs: Sequence[str], max_batch: int, opt_batch: Optional[int] = None) -> Profile:
    """input name -> (min, opt, max) shapes: batch 1, `opt_batch` (default max) and `max_batch`."""
    if not isinstance(max_batch, int) or max_batch < 1:
        raise ValueError(f"max_batch must be a positive int, got {max_batch!r}")
    opt_batch = max_batch if opt_batch is None else opt_batch
    if not 1 <= opt_batch <= max_batch:
        raise ValueError(f"opt_batch must be in [1, max_batch={max_batch}], got {opt_batch}")
    shapes = onnx_tensor_shapes(onnx_path)
    missing = [n for n in inputs if n not in shapes and n not in OPTIONAL]
    if missing:
        raise EngineError(f"{onnx_path}: missing input(s) {missing}; was it written by engines/export_onnx.py?")
    return {n: tuple((batch,) + tuple(shapes[n][1:]) for batch in (1, opt_batch, max_batch)) for n in inputs
            if n in shapes}


def trtexec_commands(onnx_dir: str, engine_dir: str, *, max_batch: int = 8, opt_batch: Optional[int] = None,
                     fp16: bool = True, trtexec: str = "trtexec", classes_per_call: int = 1) -> List[List[str]]:
    """The two trtexec command lines: batch profile min 1, opt `opt_batch` (default max), max
    (the decoder's times classes_per_call)."""
    commands = []
    for onnx_file, engine_file, inputs, per_class in GRAPHS:
        path = os.path.join(onnx_dir, onnx_file)
        profile = profile_shapes(path, inputs, *graph_batches(max_batch, opt_batch, classes_per_call, per_class))
        command = [trtexec, f"--onnx={path}", f"--saveEngine={os.path.join(engine_dir, engine_file)}"]
        for i, kind in enumerate(("min", "opt", "max")):
            command.append(f"--{kind}Shapes=" + ",".join(f"{n}:" + "x".join(map(str, shapes[i]))
                                                         for n, shapes in profile.items()))
        commands.append(command + (["--fp16"] if fp16 else []))
    return commands


def build_with_tensorrt(trt: Any, onnx_path: str, engine_path: str, profile: Profile, fp16: bool = True,
                        rtx: bool = False, compute_capability: Optional[str] = None) -> None:
    """What trtexec does, through the Python builder API of TensorRT (>= 10) or, with `rtx`,
    TensorRT-RTX: its networks are strongly typed (the graph's dtypes are the engine's; there is no
    FP16 flag) and it can build for another GPU (`compute_capability` "12.0": an RTX 5090)."""
    title = "TensorRT-RTX" if rtx else "TensorRT"
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    strongly_typed = getattr(getattr(trt, "NetworkDefinitionCreationFlag", None), "STRONGLY_TYPED", None)
    # Explicit batch is TensorRT 10's only mode; TensorRT-RTX networks are strongly typed.
    network = builder.create_network(1 << int(strongly_typed) if rtx and strongly_typed is not None else 0)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(onnx_path):  # from the file: finds external weights beside it
        errors = "\n".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise EngineError(f"{title} cannot parse {onnx_path}:\n{errors}")
    config = builder.create_builder_config()
    if fp16 and not rtx:
        config.set_flag(trt.BuilderFlag.FP16)
    if compute_capability is not None:
        if not rtx:
            raise ValueError("a compute capability to build for is a TensorRT-RTX option (--builder tensorrt-rtx)")
        name = "SM" + compute_capability.replace(".", "")
        target = getattr(trt.ComputeCapability, name, None)
        if target is None:
            known = sorted(n for n in dir(trt.ComputeCapability) if n.startswith("SM"))
            raise ValueError(f"TensorRT-RTX cannot build for compute capability {compute_capability}; it knows {known}")
        config.num_compute_capabilities = 1
        config.set_compute_capability(target, 0)
    optimization_profile = builder.create_optimization_profile()
    for name, (smallest, best, largest) in profile.items():
        optimization_profile.set_shape(name, smallest, best, largest)
    config.add_optimization_profile(optimization_profile)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise EngineError(f"{title} could not build {engine_path} from {onnx_path} (its log above says why)")
    with open(engine_path, "wb") as f:
        f.write(plan)


def decoder_queries(onnx_dir: str) -> int:
    """Q, the decoder's fixed query count (pred_logits [B,Q])."""
    path = os.path.join(onnx_dir, DECODER_FILE)
    shape = onnx_tensor_shapes(path).get("pred_logits", ())
    if len(shape) != 2 or not isinstance(shape[1], int) or shape[1] < 1:
        raise EngineError(f"{path}: pred_logits should be [batch, Q] with Q fixed, got {list(shape)}")
    return shape[1]


def _graph_is_half(onnx_path: str) -> bool:
    """Whether the graph takes float16 inputs (reads the graph only, not the weights)."""
    import onnx

    if not os.path.isfile(onnx_path):
        raise EngineError(f"ONNX file not found: {onnx_path}")
    model = onnx.load(onnx_path, load_external_data=False)
    return any(v.type.tensor_type.elem_type == onnx.TensorProto.FLOAT16 for v in model.graph.input)


def build_engines(onnx_dir: str, out_root: str, classes: Dict[str, str], *, max_batch: int = 8,
                  opt_batch: Optional[int] = None, fp16: bool = True, builder: str = "trtexec",
                  trtexec: str = "trtexec", trt: Any = None, max_frame_size: Tuple[int, int] = (1080, 1920),
                  classes_per_call: int = 1, compute_capability: Optional[str] = None,
                  run: Callable[..., subprocess.CompletedProcess] = subprocess.run,
                  log: Callable[[str], None] = print) -> str:
    """Build both engines into out_root/b{B}_q{Q}/ (b{B}_c{K}_q{Q}/); returns the pipeline.json path.

    builder "trtexec" runs that program; "tensorrt" and "tensorrt-rtx" use the Python builder API
    of the ``tensorrt`` or TensorRT-RTX package (`trt`: that module, imported when None)."""
    if builder not in BUILDERS or builder == "aoti":
        raise ValueError(f"builder must be one of {BUILDERS[:3]} (aoti: engines.aoti.build_aoti_engines), got {builder!r}")
    rtx = builder == "tensorrt-rtx"
    queries = decoder_queries(onnx_dir)
    graph_batches(max_batch, opt_batch, classes_per_call, True)   # checks classes_per_call
    for name, file in classes.items():
        if not os.path.isfile(file):
            raise EngineError(f"prompt file of class {name!r} not found: {file}")
    if builder == "trtexec" and shutil.which(trtexec) is None:
        raise EngineError(f"{trtexec!r} not found: install TensorRT (it ships trtexec), pass its path, "
                          "or use builder='tensorrt' with the tensorrt Python package")
    if trt is None and builder != "trtexec":
        # The builder API is not in tensorrt_lean.
        trt = import_tensorrt(None, TENSORRT_RTX) if rtx else import_tensorrt("tensorrt", TENSORRT)
    if rtx and fp16 and not _graph_is_half(os.path.join(onnx_dir, VISION_ENCODER_FILE)):
        log("note: TensorRT-RTX builds the precision the graph has and these graphs are float32; for half-precision "
            "engines export them with engines/export_onnx.py --dtype float16")
    folder = engine_folder(out_root, max_batch, queries, classes_per_call)
    os.makedirs(os.path.join(folder, "prompts"), exist_ok=True)
    if builder == "trtexec":
        for command in trtexec_commands(onnx_dir, folder, max_batch=max_batch, opt_batch=opt_batch, fp16=fp16,
                                        trtexec=trtexec, classes_per_call=classes_per_call):
            log(" ".join(command))
            done = run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            if done.returncode != 0:
                tail = "\n".join((done.stdout or "").splitlines()[-20:])
                raise EngineError(f"trtexec failed (exit {done.returncode}) building {command[2].split('=', 1)[1]}:\n{tail}")
    else:
        for onnx_file, engine_file, inputs, per_class in GRAPHS:
            onnx_path, engine_path = os.path.join(onnx_dir, onnx_file), os.path.join(folder, engine_file)
            log(f"{'TensorRT-RTX' if rtx else 'TensorRT'} builder: {onnx_path} -> {engine_path}")
            batches = graph_batches(max_batch, opt_batch, classes_per_call, per_class)
            started = time.perf_counter()
            build_with_tensorrt(trt, onnx_path, engine_path, profile_shapes(onnx_path, inputs, *batches), fp16,
                                rtx=rtx, compute_capability=compute_capability)
            log(f"built {engine_file} in {time.perf_counter() - started:.1f} s: {os.path.getsize(engine_path) / 2**20:.1f} MiB")
    copied = {}
    for name, file in classes.items():
        copied[name] = shutil.copy(file, os.path.join(folder, "prompts", os.path.basename(file)))
    config = write_pipeline_config(os.path.join(folder, CONFIG_FILE), "tensorrt_rtx" if rtx else "tensorrt",
                                   os.path.join(folder, VISION_ENCODER_ENGINE), os.path.join(folder, DECODER_ENGINE),
                                   copied, max_batch, max_frame_size, classes_per_call)
    log(f"engines and config in {folder}; run: segpost run --config {config} --source CAMERA ...")
    return config


def _class_arg(value: str) -> Tuple[str, Optional[str]]:
    """NAME=PROMPT.npz, or NAME alone (aoti: the prompt comes from the model's text encoder)."""
    name, sep, file = value.partition("=")
    if not name or (sep and not file):
        raise argparse.ArgumentTypeError(f"expected NAME=PROMPT.npz (or NAME with --builder aoti), got {value!r}")
    return name, file or None


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m segpost.engines.build", description=__doc__.split("\n\n")[0])
    parser.add_argument("onnx_dir", help="folder with vision-encoder.onnx and decoder.onnx; with --builder aoti the "
                                         "model: a Sam3Model weights folder, 'random' or 'tiny'")
    parser.add_argument("out_root", help="the engines go to OUT_ROOT/b{B}_q{Q}/")
    parser.add_argument("--class", dest="classes", action="append", type=_class_arg, default=[],
                        metavar="NAME=PROMPT.npz", help="a class and its prompt file (repeat)")
    parser.add_argument("--max-batch", type=int, default=8, help="largest batch = cameras per round (default 8)")
    parser.add_argument("--opt-batch", type=int, help="batch TensorRT tunes for (default: max batch)")
    parser.add_argument("--classes-per-call", type=int, default=1, metavar="K",
                        help="classes one decoder call runs: its batch profile reaches max batch x K (default 1)")
    parser.add_argument("--no-fp16", dest="fp16", action="store_false", help="fp32 engines (trtexec, tensorrt)")
    parser.add_argument("--trtexec", default="trtexec", help="path of trtexec")
    parser.add_argument("--builder", choices=BUILDERS, default="trtexec",
                        help="trtexec; tensorrt: the tensorrt package's builder API; tensorrt-rtx: TensorRT-RTX's; "
                             "aoti: PyTorch's AOTInductor (.pt2 packages, any NVIDIA GPU with torch)")
    parser.add_argument("--device", default="cuda", help="aoti: where to compile and run (cuda or cpu)")
    parser.add_argument("--compute-capability", metavar="X.Y",
                        help="tensorrt-rtx: build for this GPU instead of the one here (e.g. 12.0: RTX 5090)")
    parser.add_argument("--print-commands", action="store_true", help="print the trtexec commands, build nothing")
    args = parser.parse_args(argv)
    try:
        if args.print_commands:
            folder = engine_folder(args.out_root, args.max_batch, decoder_queries(args.onnx_dir), args.classes_per_call)
            for command in trtexec_commands(args.onnx_dir, folder,
                                            max_batch=args.max_batch, opt_batch=args.opt_batch, fp16=args.fp16,
                                            trtexec=args.trtexec, classes_per_call=args.classes_per_call):
                print(" ".join(command))
            return 0
        if not args.classes:
            parser.error("name at least one --class NAME=PROMPT.npz (engines/extract_prompts.py writes them)")
        if args.builder == "aoti":
            from .aoti import build_aoti_engines

            build_aoti_engines(args.onnx_dir, args.out_root, dict(args.classes), max_batch=args.max_batch,
                               classes_per_call=args.classes_per_call, device=args.device)
            return 0
        missing = [name for name, file in args.classes if file is None]
        if missing:
            parser.error(f"--class {missing[0]} needs =PROMPT.npz with the {args.builder} builder")
        build_engines(args.onnx_dir, args.out_root, dict(args.classes), max_batch=args.max_batch,
                      opt_batch=args.opt_batch, fp16=args.fp16, builder=args.builder, trtexec=args.trtexec,
                      classes_per_call=args.classes_per_call, compute_capability=args.compute_capability)
    except (EngineError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
