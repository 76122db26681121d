"""The tiny SAM3 exported as another exporter would write it, like the engines users bring: other
tensor names and a decoder without a prompt-mask input (it attends to all P prompt tokens).

    python tests/users_engines.py OUT_DIR
    segpost inspect OUT_DIR/vision-encoder.onnx OUT_DIR/decoder.onnx
"""
import sys

# Contract name -> the name written. fpn_feat_2 and fpn_pos_2 keep theirs, as in the users'
# engines: they have one shape, so only their names tell them apart.
OTHER_NAMES = {"images": "pixel_values", "fpn_feat_0": "fpn_0", "fpn_feat_1": "fpn_1", "prompt_features": "text_embeds",
               "pred_masks": "masks", "pred_boxes": "boxes", "pred_logits": "logits", "presence_logits": "presence"}


def export(out_dir: str):
    """(vision encoder, decoder) paths; the weights are the export tests' tiny model's."""
    from export_cases import tiny_model
    from segpost.engines import sam3_onnx

    return sam3_onnx.export_onnx(tiny_model(), out_dir, tensor_names=OTHER_NAMES, prompt_mask=False)


if __name__ == "__main__":
    print(*export(sys.argv[1]), sep="\n")
