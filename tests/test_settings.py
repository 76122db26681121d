"""Every setting declared once (issue 30): the C++ Config structs bound field by field and filled by
name from the declarations, one reader for every config file naming the file and the key, and
`segpost config schema` printing every declared key."""
import dataclasses
import json
import os
import shutil

import pytest

import segpost
from segpost import _ext
from segpost._settings import _model_in, fields_of, struct_fields
from segpost.cli import main
from segpost.config import RunConfig, UiConfig, load_config
from segpost.fleet.config import FleetFile, load_fleet_config
from segpost.pipeline_config import PipelineConfig
from segpost.postprocess_config import PostprocessConfig
from segpost.serve.config import ServeConfig, load_serve_config
from segpost.track import TrackerConfig

# Each declaration, its C++ struct, and what the caller gives that is not a setting (sizes).
PAIRS = [(PostprocessConfig, _ext.PostprocessorConfig, set()),
         (TrackerConfig, _ext.TrackerConfig, {"max_cameras", "num_classes", "capacity", "mask_h", "mask_w",
                                               "use_cuda"})]


@pytest.mark.parametrize("model, struct, context", PAIRS, ids=lambda v: getattr(v, "__name__", ""))
def test_every_cpp_field_has_one_python_declaration_and_back(model, struct, context):
    """A new option is one declaration and one struct field (bound by def_readwrite): missing either
    side fails here."""
    cpp = set(struct_fields(struct))
    python = set(fields_of(model))
    spelled = model.CPP_SPELLED
    from_spelled = {name for names in spelled.values() for name in names}
    assert cpp == (python - set(spelled)) | from_spelled | context, (
        f"C++ without a declaration: {sorted(cpp - (python - set(spelled)) - from_spelled - context)}; "
        f"declared without a C++ field: {sorted((python - set(spelled)) - cpp)}")
    assert set(spelled) <= python
    # Same-named fields start from the same default on both sides (a default changed on one side only).
    defaults = struct()
    for name in sorted((python - set(spelled)) & cpp):
        default = fields_of(model)[name].default
        if default is not None:
            value = getattr(defaults, name)
            expected = default.value if hasattr(default, "value") else default
            assert value == pytest.approx(expected), f"{model.__name__}.{name}: C++ {value}, Python {expected}"


def _distinct(struct):
    """A value for each field of a bound struct, all different from its default and each other."""
    values = {}
    for i, name in enumerate(struct_fields(struct)):
        default = getattr(struct(), name)
        values[name] = (not default) if isinstance(default, bool) else type(default)(default + 3 + i)
    return values


@pytest.mark.parametrize("struct", [_ext.PostprocessorConfig, _ext.TrackerConfig, _ext.ZoneMasksConfig],
                         ids=lambda s: s.__name__)
def test_struct_fields_round_trip(struct):
    """Each def_readwrite reads and writes its own field (not a neighbour's)."""
    values = _distinct(struct)
    filled = struct()
    for name, value in values.items():
        setattr(filled, name, value)
    assert {name: getattr(filled, name) for name in values} == pytest.approx(values)


def test_the_built_cores_hold_what_was_declared():
    """PostprocessConfig and TrackerConfig through the converter into the C++ objects, read back
    from the objects themselves."""
    config = PostprocessConfig(max_frames=3, num_queries=17, mask_size=(24, 40), capacity=9, max_frame_size=(60, 90),
                               score_threshold=0.25, mask_threshold=0.7, mask_mode=segpost.MaskMode.PROBABILITY,
                               top_k=4, output=segpost.OutputKind.RLE, device="cpu", rle_capacity=1234)
    core = segpost.Postprocessor(config)._core.config
    assert (core.max_frames, core.num_queries, core.mask_h, core.mask_w, core.capacity) == (3, 17, 24, 40, 9)
    assert (core.max_frame_h, core.max_frame_w, core.top_k, core.rle_capacity, core.mask_mode) == (60, 90, 4, 1234, 1)
    assert core.score_threshold == pytest.approx(0.25) and core.mask_threshold == pytest.approx(0.7)
    assert (core.use_cuda, core.masks_on_device, core.mask_bits, core.mask_form) == (False, False, 8, 0)
    packed = segpost.Postprocessor(device="cpu", output=segpost.OutputKind.PACKED, max_frames=2)._core.config
    assert (packed.mask_bits, packed.rle_capacity, packed.top_k, packed.max_frames) == (1, 0, 0, 2)

    track = TrackerConfig(max_tracks=7, max_age=11, min_hits=2, high_score=0.4, match_threshold=0.3,
                          mask_weight=0.2, new_track_score=0.9)
    tracker = segpost.Tracker(track, cameras=3, class_names=["a", "b"], capacity=9, mask_size=(24, 40), device="cpu")
    core = tracker._core.config
    assert (core.max_cameras, core.num_classes, core.capacity, core.mask_h, core.mask_w) == (3, 2, 9, 24, 40)
    assert (core.max_tracks, core.max_age, core.min_hits, core.use_cuda) == (7, 11, 2, False)
    assert [core.high_score, core.match_threshold, core.mask_weight, core.new_track_score] == \
        pytest.approx([0.4, 0.3, 0.2, 0.9])


def test_the_pipeline_builds_its_postprocessors_from_its_config(tmp_path):
    """Every setting PipelineConfig shares with PostprocessConfig reaches each class's Postprocessor
    (a run config through load_config, then the C++ struct the core holds)."""
    from segpost.pipeline import MultiCameraPipeline

    path = _write(tmp_path, "run.json", {"backend": "synthetic", "classes": ["red", "blue"], "max_cameras": 3,
                                         "max_frame_size": [120, 200], "score_threshold": 0.35, "top_k": 5,
                                         "mask_mode": "probability", "mask_threshold": 0.6, "capacity": 40,
                                         "output": "packed"})
    encoder, decoder, config = load_config(path, device="cpu")
    pipeline = MultiCameraPipeline(encoder, decoder, config)
    for post in pipeline._post:
        assert post.config == config.postprocess_config(max_frames=3, num_queries=pipeline.geometry.num_queries,
                                                        mask_size=pipeline.geometry.mask_size, device="cpu")
        core = post._core.config
        assert (core.max_frames, core.max_frame_h, core.max_frame_w, core.top_k, core.capacity) == (3, 120, 200, 5, 40)
        assert (core.mask_mode, core.mask_bits) == (1, 1)
        assert [core.score_threshold, core.mask_threshold] == pytest.approx([0.35, 0.6])


def test_the_old_keywords_still_build_a_postprocessor():
    post = segpost.Postprocessor(device="cpu", max_frames=2, score_threshold=0.3)
    assert post.config == PostprocessConfig(device="cpu", max_frames=2, score_threshold=0.3)
    assert dataclasses.replace(TrackerConfig(), max_age=4).max_age == 4
    with pytest.raises(TypeError, match="not both"):
        segpost.Postprocessor(PostprocessConfig(), max_frames=2)
    with pytest.raises(ValueError, match=r"^PostprocessConfig: rle_capacity applies to OutputKind.RLE only$"):
        PostprocessConfig(rle_capacity=10)   # a check across fields names the class, no key
    # A call's unknown or missing keyword stays a TypeError, as for any Python function.
    with pytest.raises(TypeError, match=r"PostprocessConfig: unknown key\(s\) \['max_frame'\]"):
        segpost.Postprocessor(device="cpu", max_frame=2)
    with pytest.raises(TypeError, match="PipelineConfig.classes: Field required"):
        PipelineConfig()
    # Neither a bool nor a string is taken for a number (pydantic's lax mode would take both).
    for value in (True, "8"):
        with pytest.raises(ValueError, match=f"TrackerConfig.max_age: must be a number, not {value!r}"):
            TrackerConfig(max_age=value)


# -- one reader: every error names the file and the key ------------------------------------------

def _write(tmp_path, name, content):
    path = tmp_path / name
    path.write_text(json.dumps(content))
    return str(path)


@pytest.mark.parametrize("change, message", [
    ({"track": {"max_age": -1}}, r"run.json: track.max_age \(TrackerConfig.max_age\): Input should be greater than or equal to 0 \(got -1\)"),
    ({"track": {"max_ages": 3}}, r"run.json: track: unknown key\(s\) \['max_ages'\]; known keys are \['high_score'"),
    ({"max_frame_size": [0, 10]}, r"run.json: max_frame_size\.0: Input should be greater than or equal to 1"),
    ({"score_threshold": True}, r"run.json: score_threshold: must be a number, not True"),
    ({"ui": {"listen": "127.0.0.1:0", "fps": 0}}, r"run.json: ui.fps: Input should be greater than 0 \(got 0\)"),
    ({"ui": {"fps": 2}}, r"run.json: ui.listen: Field required"),
    ({"mask_mode": "sigmoid"}, r"run.json: mask_mode: mask_mode must be logit or probability, got 'sigmoid'"),
])
def test_run_config_errors_name_the_file_and_key(tmp_path, change, message):
    path = _write(tmp_path, "run.json", {"backend": "synthetic", "classes": ["red"], **change})
    with pytest.raises(ValueError, match=message):
        load_config(path, device="cpu")


FLEET = {"pipeline": {"backend": "synthetic", "classes": ["red"], "max_cameras": 2}, "cameras_per_worker": 2,
         "cameras": [{"name": "a", "source": "${SEGPOST_SETTINGS_SOURCE}"}, {"name": "b", "source": "b.mp4"}]}


@pytest.mark.parametrize("change, message", [
    ({"sink": {"shards": 0}}, r"fleet.json: sink.shards: Input should be greater than or equal to 1 \(got 0\)"),
    ({"sink": {"fsync": 1}}, r"fleet.json: sink: unknown key\(s\) \['fsync'\]; known keys are \['fsync_seconds'"),
    ({"cameras": [{"name": "a", "src": "x"}]}, r"fleet.json: cameras\.0: unknown key\(s\) \['src'\]"),
    ({"restart_backoff": [1]}, r"fleet.json: restart_backoff\.1: Field required"),
    ({"gpus_per_worker": 2.5}, r"fleet.json: gpus_per_worker: above 1 must be a whole number, got 2.5"),
])
def test_fleet_config_errors_name_the_file_and_key(tmp_path, monkeypatch, change, message):
    monkeypatch.setenv("SEGPOST_SETTINGS_SOURCE", "a.mp4")
    path = _write(tmp_path, "fleet.json", {**FLEET, **change})
    with pytest.raises(ValueError, match=message):
        load_fleet_config(path)


def test_fleet_config_reads_its_keys_and_expands_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("SEGPOST_SETTINGS_SOURCE", "rtsp://cam/a")
    config = load_fleet_config(_write(tmp_path, "fleet.json", {**FLEET, "sink": {"shards": 2}, "standby_workers": 1,
                                                               "gpus_per_worker": 0.5}))
    assert [c.source for c in config.cameras] == ["rtsp://cam/a", "b.mp4"]
    assert (config.sink_shards, config.standby_workers, config.gpus_per_worker, config.standby_gpus) == (2, 1, 0.5, 0.5)
    assert config.restart_backoff == (1.0, 30.0) and config.fsync_seconds == 1.0


@pytest.mark.parametrize("change, message", [
    ({"http_port": 0}, r"serve.json: http_port: Input should be greater than or equal to 1 \(got 0\)"),
    ({"tls": {"certfile": "a.pem", "keyfile": "b.key", "ca": "c"}},
     r"serve.json: tls: unknown key\(s\) \['ca'\]; known keys are \['certfile', 'keyfile', 'keyfile_password'\]"),
    ({"pipeline": {"backend": "synthetic"}}, None),   # the pipeline's own keys are read where it is built
])
def test_serve_config_errors_name_the_file_and_key(tmp_path, change, message):
    path = _write(tmp_path, "serve.json", {"pipeline": {"backend": "synthetic", "classes": ["red"]}, **change})
    if message is None:
        load_serve_config(path)
        return
    with pytest.raises(ValueError, match=message):
        load_serve_config(path)


# -- segpost config schema ------------------------------------------------------------------------

def _declared_keys(model, prefix=""):
    """Every key a config file model declares, nested ones as parent.key (list items as key[].)."""
    for name, field in fields_of(model).items():
        yield prefix + name
        inner = _model_in(field.annotation)
        if inner is not None:
            origin = getattr(field.annotation, "__origin__", None)
            many = origin in (list, tuple) or "List[" in str(field.annotation)
            yield from _declared_keys(inner, prefix + name + ("[]." if many else "."))


@pytest.mark.parametrize("name, model", [("run", RunConfig), ("fleet", FleetFile), ("serve", ServeConfig)])
def test_config_schema_prints_every_declared_key(name, model, capsys):
    assert main(["config", "schema", name]) == 0
    lines = capsys.readouterr().out.splitlines()
    printed = {line.split()[0] for line in lines[1:]}
    declared = set(_declared_keys(model))
    assert declared == printed, f"not printed: {sorted(declared - printed)}; not declared: {sorted(printed - declared)}"
    for line in lines[1:]:
        key = line.split()[0]
        field = _field_at(model, key)
        assert "default" in line and (not field.description or field.description.split("\n")[0][:40] in line), line
    assert main(["config", "schema", name, "--json"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert set(schema["properties"]) == set(fields_of(model))


def _field_at(model, key):
    *parents, last = key.replace("[]", "").split(".")
    for part in parents:
        model = _model_in(fields_of(model)[part].annotation)
    return fields_of(model)[last]


def _keys_in(node):
    if isinstance(node, dict):
        for key, value in node.items():
            yield key
            yield from _keys_in(value)
    elif isinstance(node, list):
        for value in node:
            yield from _keys_in(value)


@pytest.mark.parametrize("name", ["run", "fleet", "serve"])
def test_the_json_schema_states_bounds_as_json_schema_does(name, capsys):
    """A bound on a tuple's item or an Optional is JSON Schema's minimum/maximum, not pydantic's own
    ge/le (which a bound placed outside a validator becomes), and the text shows it."""
    main(["config", "schema", name, "--json"])
    keys = set(_keys_in(json.loads(capsys.readouterr().out)))
    assert not keys & {"ge", "le", "gt", "lt"}, f"not JSON Schema: {sorted(keys & {'ge', 'le', 'gt', 'lt'})}"


def test_schema_shows_defaults_and_bounds(capsys):
    main(["config", "schema", "run"])
    out = capsys.readouterr().out
    for key, bounds in (("max_frame_size", "[each >= 1, <= 32768]"), ("top_k", "[>= 1]"),
                        ("busy_ms", "[each >= 0]")):
        line = next(line for line in out.splitlines() if line.split()[0] == key)
        assert bounds in line, line
    assert "track.max_tracks" in out and "[>= 1, <= 4096]" in out
    line = next(line for line in out.splitlines() if line.split()[0] == "score_threshold")
    assert "default 0.5" in line and "[>= 0, <= 1]" in line and "least score of a kept detection" in line


# -- the run config's "ui" block (issue 31) -------------------------------------------------------

def _ui(tmp_path, argv, block):
    from segpost.cli import build_parser
    from segpost.cli.run import _ui_settings

    config = {"backend": "synthetic", "classes": ["red"]}
    if block is not None:
        config["ui"] = block
    path = _write(tmp_path, "run.json", config)
    args = build_parser().parse_args(["run", "--config", path, "--source", "x.mp4", *argv])
    return _ui_settings(args)


def test_ui_block_and_flags_over_it(tmp_path):
    assert _ui(tmp_path, [], None) is None
    block = {"listen": "127.0.0.1:8123", "key_file": "keys.txt", "fps": 2, "width": 320, "certfile": "c.pem",
             "keyfile": "k.pem", "allow_unauthenticated": True}
    ui = _ui(tmp_path, [], block)
    assert (ui.listen, ui.fps, ui.width, ui.allow_unauthenticated) == ("127.0.0.1:8123", 2.0, 320, True)
    assert ui.key_file == os.path.join(str(tmp_path), "keys.txt")      # relative to the config file
    assert ui.certfile == os.path.join(str(tmp_path), "c.pem") and ui.keyfile == os.path.join(str(tmp_path), "k.pem")
    flags = ["--ui", "127.0.0.1:9000", "--ui-fps", "8", "--ui-width", "200", "--ui-key-file", "mine.txt"]
    ui = _ui(tmp_path, flags, block)
    assert (ui.listen, ui.fps, ui.width, ui.key_file) == ("127.0.0.1:9000", 8.0, 200, "mine.txt")
    assert ui.certfile.endswith("c.pem") and ui.allow_unauthenticated          # what no flag gave stays
    ui = _ui(tmp_path, ["--ui", "127.0.0.1:9001"], None)
    declared = UiConfig.model_fields
    assert (ui.fps, ui.width, ui.key_file) == (declared["fps"].default, declared["width"].default, None) == (4.0, 640, None)
    with pytest.raises(ValueError, match=r"run.json: ui \(with the --ui flags\): fps: Input should be greater than 0"):
        _ui(tmp_path, ["--ui-fps", "0"], {"listen": "127.0.0.1:1"})
    with pytest.raises(ValueError, match="--ui-\\* flags without --ui"):
        _ui(tmp_path, ["--ui-fps", "3"], None)


def test_run_starts_the_live_page_from_the_config_block(tmp_path, capsys):
    """A real `segpost run` with only the config's "ui" block: the page starts where the block says."""
    pytest.importorskip("starlette", reason="the live page needs the ui extra (pip install segpost[ui])")
    pytest.importorskip("uvicorn", reason="the live page needs the ui extra (pip install segpost[ui])")
    if shutil.which("ffmpeg") is None:
        pytest.skip("the ffmpeg program makes the test video (apt-get install ffmpeg; .ci/run does)")
    from brokers import free_port, make_h264
    from segpost.synthetic.scene import Scene

    scene = Scene([(120, 160)], num_classes=1, seed=3)
    video = make_h264(str(tmp_path / "scene.mp4"), [scene.render(r)[0][0] for r in range(6)], fps=10)
    port = free_port()
    config = _write(tmp_path, "run.json", {"backend": "synthetic", "classes": ["red"], "max_frame_size": [240, 320],
                                           "ui": {"listen": f"127.0.0.1:{port}", "fps": 1, "width": 64}})
    assert main(["run", "--device", "cpu", "--config", config, "--source", video, "--out",
                 str(tmp_path / "out.jsonl"), "--max-rounds", "2"]) == 0
    assert f"live page on http://127.0.0.1:{port}" in capsys.readouterr().err
