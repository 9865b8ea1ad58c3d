"""Model and data builders shared by the EdgeTAM tests (tests/sam/sam2) and the SAM app and CLI tests (tests/sam)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from repvit.sam.sam2 import EdgeTamConfig, build_edgetam
from repvit.sam.sam2.image_predictor import preprocess_image

SMALL = 256  # the input size of small_edgetam
VIDEO_W, VIDEO_H, VIDEO_N = 160, 128, 5  # write_video's default size and length


def sample_image(offset: int = 0) -> np.ndarray:
    """A 300 x 400 crop of scikit-image's astronaut, shifted by ``offset`` steps (a frame of the test video)."""
    from skimage import data

    y, x = 40 + 6 * offset, 60 + 8 * offset
    return np.ascontiguousarray(data.astronaut()[y : y + 300, x : x + 400])


def perturb_edgetam(model, image: np.ndarray, point: tuple[float, float]):
    """Make random weights show mistakes: a fuser that changes the memory (layer scale 0.3-0.5 instead of 1e-6),
    sharper memory attention and larger temporal encodings, and, on ``image`` clicked at ``point`` (pixels), every
    mask token's logits centred (about 30% foreground) and the object score at +1."""
    g = torch.Generator().manual_seed(1)
    s = model.image_size
    with torch.no_grad():
        for blk in model.memory_encoder.fuser.layers:
            blk.gamma.copy_(0.3 + 0.2 * torch.rand(blk.gamma.shape, generator=g))
        for layer in model.memory_attention.layers:
            for attn in (layer.cross_attn_image, layer.self_attn):
                attn.q_proj.weight.mul_(3.0)
                attn.k_proj.weight.mul_(3.0)
        model.maskmem_tpos_enc.mul_(20.0)
        _, feats, _, sizes = model._prepare_backbone_features(model.forward_image(preprocess_image(image, s)))
        high_res = [x.permute(1, 2, 0).reshape(1, -1, *hw) for x, hw in zip(feats[:-1], sizes[:-1])]
        emb = (feats[-1] + model.no_mem_embed).permute(1, 2, 0).reshape(1, -1, *sizes[-1])
        coords = torch.tensor([[[point[0] * s / image.shape[1], point[1] * s / image.shape[0]]]])
        sparse, dense = model.sam_prompt_encoder(points=(coords, torch.ones(1, 1)), boxes=None, masks=None)
        dec = model.sam_mask_decoder
        upscaled = {}
        hook = dec.output_upscaling[4].register_forward_hook(lambda m, i, o: upscaled.setdefault("x", o))
        masks, _, _, score = dec.predict_masks(emb, model.sam_prompt_encoder.get_dense_pe(), sparse, dense, False,
                                               high_res)
        hook.remove()
        mu = upscaled["x"].mean(dim=(0, 2, 3))
        for i, mlp in enumerate(dec.output_hypernetworks_mlps):
            mlp.layers[-1].bias.sub_(masks[0, i].flatten().quantile(0.7) * mu / mu.dot(mu))
        dec.pred_obj_score_head.layers[-1].bias.add_(1.0 - score[0, 0])
    return model


def small_edgetam(size: int = SMALL):
    """A perturbed random EdgeTAM at ``size`` px with the video predictor's settings."""
    torch.manual_seed(0)
    model = build_edgetam(config=EdgeTamConfig(image_size=size, binarize_mask_from_pts_for_mem_enc=True))
    return perturb_edgetam(model, sample_image(), (200.0, 150.0))


def write_video(path: Path, n: int = VIDEO_N, width: int = VIDEO_W, height: int = VIDEO_H, fps: int = 10) -> Path:
    """An H.264 MP4 of ``n`` crops of scikit-image's astronaut, shifted 6 px right per frame."""
    av = pytest.importorskip("av", reason="video files need PyAV: pip install 'repvit-pytorch[video]'")
    from skimage import data

    photo = data.astronaut()
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264" if "libx264" in av.codecs_available else "mpeg4", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for i in range(n):
            crop = np.ascontiguousarray(photo[40:40 + height, 150 + 6 * i:150 + 6 * i + width])
            for packet in stream.encode(av.VideoFrame.from_ndarray(crop, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def small_video_predictor(tmp_path: Path, image_size: int = 256):
    """EdgeTAM's video predictor with random weights that went through ``save_edgetam`` and back.

    At random initialisation the object-score head says "no object" and every mask would be empty; its bias is
    raised so that the object counts as present and the masks are the decoder's (not empty, not all the frame).
    """
    from repvit.sam.sam2 import EdgeTamConfig, EdgeTamVideoPredictor, build_edgetam, save_edgetam

    torch.manual_seed(0)
    model = build_edgetam()
    with torch.no_grad():
        model.sam_mask_decoder.pred_obj_score_head.layers[-1].bias.fill_(10.0)
    ckpt = save_edgetam(model, tmp_path / "edgetam_random.pt")
    config = EdgeTamConfig(image_size=image_size, binarize_mask_from_pts_for_mem_enc=True)
    return EdgeTamVideoPredictor(build_edgetam(ckpt, config=config))


def object_always_present(model: torch.nn.Module) -> torch.nn.Module:
    """Random EdgeTAM weights whose object-score head says "present" on every frame (at random it often says
    "absent", and every mask would be empty)."""
    last = [m for m in model.sam_mask_decoder.pred_obj_score_head.modules() if isinstance(m, torch.nn.Linear)][-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.fill_(10.0)
    return model
