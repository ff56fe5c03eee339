"""CLIP score: a tiny random open_clip model saved to a file scores exactly 100 x cosine by hand."""
from __future__ import annotations

import json

import numpy as np
import open_clip
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from streamingt2v_core.metrics.clip_score import clip_score, infer_architecture, load_open_clip
from streamingt2v_core.metrics.synthetic import TINY_OPEN_CLIP_CONFIG, textured_image


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory):
    """A random tiny open_clip model (kept in memory) and its weights saved two ways."""
    folder = tmp_path_factory.mktemp("clip")
    torch.manual_seed(1)
    model = open_clip.CLIP(**TINY_OPEN_CLIP_CONFIG).eval()
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    with_metadata = folder / "tiny_with_config.safetensors"
    save_file(state, with_metadata, metadata={"open_clip_config": json.dumps(TINY_OPEN_CLIP_CONFIG)})
    bare = folder / "tiny_bare.pth"
    torch.save(state, bare)
    return model, with_metadata, bare


def frames_uint8() -> np.ndarray:
    # two different non-square frames: the preprocessing must resize and centre-crop them
    return np.stack([textured_image(40, 56, seed=11), textured_image(40, 56, seed=12)])


def score_by_hand(model: torch.nn.Module, frames: np.ndarray, prompt: str) -> list[float]:
    size = TINY_OPEN_CLIP_CONFIG["vision_cfg"]["image_size"]
    preprocess = open_clip.image_transform(size, is_train=False)  # CLIP mean/std, bicubic, crop
    with torch.no_grad():
        text = model.encode_text(open_clip.tokenize([prompt]))[0]
        scores = []
        for frame in frames:
            image = model.encode_image(preprocess(Image.fromarray(frame)).unsqueeze(0))[0]
            scores.append(100.0 * torch.nn.functional.cosine_similarity(image, text, dim=0).item())
    return scores


def test_score_equals_100_cosine_by_hand_for_two_frames(tiny_clip):
    model, path, _ = tiny_clip
    frames = frames_uint8()
    expected = score_by_hand(model, frames, "a red fox in the snow")
    result = clip_score(frames, "a red fox in the snow", path)  # architecture from the file's metadata
    assert result.per_frame == pytest.approx(expected, abs=1e-4)
    assert result.score == pytest.approx(sum(expected) / 2, abs=1e-4)
    assert expected[0] != pytest.approx(expected[1], abs=1e-3)  # the frames are really scored apart
    # the same from a float IMAGE batch (quantised to the same uint8 frames)
    as_image = torch.from_numpy(frames).float() / 255.0
    assert clip_score(as_image, "a red fox in the snow", path).score == pytest.approx(result.score, abs=1e-5)


def test_config_can_be_chosen_for_a_file_without_metadata(tiny_clip):
    model, _, bare = tiny_clip
    bundle = load_open_clip(bare, TINY_OPEN_CLIP_CONFIG)
    assert bundle.architecture == "custom"
    frames = frames_uint8()
    expected = score_by_hand(model, frames, "waves")
    result = clip_score(frames, "waves", bundle, batch_size=1)
    assert result.per_frame == pytest.approx(expected, abs=1e-4)


def test_unregistered_shapes_without_config_give_a_clear_error(tiny_clip):
    _, _, bare = tiny_clip
    with pytest.raises(ValueError, match="no registered open_clip architecture fits"):
        load_open_clip(bare)


def test_vit_h_14_is_inferred_from_its_shapes():
    with torch.device("meta"):
        state = open_clip.CLIP(**open_clip.get_model_config("ViT-H-14")).state_dict()
    matches = infer_architecture(state)
    assert matches[0] == "ViT-H-14"
    assert set(matches) == {"ViT-H-14", "ViT-H-14-quickgelu"}  # shapes cannot tell GELU variants apart


def test_missing_or_wrong_checkpoint_gives_a_clear_error(tiny_clip, tmp_path):
    frames = frames_uint8()
    with pytest.raises(ValueError, match="not found"):
        clip_score(frames, "a prompt", tmp_path / "missing.safetensors")
    text_only = tmp_path / "text_encoder_only.safetensors"
    save_file({"transformer.resblocks.0.attn.in_proj_weight": torch.zeros(3, 1)}, text_only)
    with pytest.raises(ValueError, match="not a full open_clip ViT CLIP checkpoint"):
        clip_score(frames, "a prompt", text_only)
    _, path, _ = tiny_clip
    with pytest.raises(ValueError, match="does not fit architecture 'ViT-B-32'"):
        load_open_clip(path, "ViT-B-32")
    with pytest.raises(ValueError, match="unknown open_clip architecture"):
        load_open_clip(path, "ViT-Z-99")
    garbage = tmp_path / "garbage.bin"
    garbage.write_bytes(b"\x00" * 10)
    with pytest.raises(ValueError, match="cannot read"):
        load_open_clip(garbage)


@pytest.mark.parametrize("prompt", ["", "   ", None])
def test_empty_prompt_is_rejected(tiny_clip, prompt):
    _, path, _ = tiny_clip
    with pytest.raises(ValueError, match="prompt"):
        clip_score(frames_uint8(), prompt, path)


def test_frames_outside_0_1_are_rejected(tiny_clip):
    _, path, _ = tiny_clip
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        clip_score(np.full((2, 8, 8, 3), 3.0, np.float32), "a prompt", path)
