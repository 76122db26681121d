"""transformers' Sam3Model as the two engines (GPU; random weights, full size)."""
import numpy as np
import pytest

pytestmark = pytest.mark.gpu


def test_sam3_torch_engines_fit_the_contract_and_run(cp):
    pytest.importorskip("transformers")
    from segpost.engines.contract import check_engines
    from segpost.engines.torch_sam3 import Sam3Torch
    from segpost.pipeline import ClassPrompt, MultiCameraPipeline, PipelineConfig
    from segpost.synthetic.scene import Scene

    model = Sam3Torch(None, dtype=np.float16, device="cuda")
    geometry = check_engines(model.vision_encoder, model.decoder)
    t = model.decoder.tensors
    assert (geometry.image_size, geometry.num_queries, geometry.mask_size) == (1008, 200, (288, 288))
    assert [t[n].shape for n in ("pred_masks", "pred_boxes", "pred_logits", "presence_logits")] == \
        [(-1, 200, 288, 288), (-1, 200, 4), (-1, 200), (-1, 1)]
    assert model.vision_encoder.tensors["fpn_feat_0"].shape == (-1, 256, 288, 288)
    prompts = [ClassPrompt(*p) for p in model.text_prompts(["person", "hand"])]
    pipeline = MultiCameraPipeline(model.vision_encoder, model.decoder,
                                   PipelineConfig(prompts, max_cameras=2, max_frame_size=(480, 640), score_threshold=0.0))
    frames, _ = Scene([(480, 640), (240, 320)], num_classes=2).render(0)
    result = pipeline.process(frames)
    # random weights: every query passes a 0 threshold, capped at capacity, masks sized per camera
    assert result.cameras[1].frame_size == (240, 320)
    assert result.num_detections == 2 * min(128, 2 * 200)
    # the pipeline's outputs equal a direct call of the model on the same inputs
    import torch

    features, mask = (torch.as_tensor(a, device="cuda") for a in pipeline._class_prompts[1])
    with torch.inference_mode():
        images = torch.as_tensor(pipeline._buffers["images"][:2], device="cuda")
        direct = model.model(pixel_values=images, text_embeds=model.text_embeds(features[None].expand(2, -1, -1)),
                             attention_mask=mask[None].expand(2, -1).long())
    rows = slice(2, 4) if pipeline.classes_per_call == 2 else slice(0, 2)   # class 1's rows of the last call
    got = torch.as_tensor(pipeline._buffers["pred_logits"][rows], device="cuda")
    assert torch.allclose(got.float(), direct.pred_logits.float(), atol=2e-2, rtol=2e-2)
