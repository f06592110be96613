"""scripts/init_loc_embeddings.py: only the <loc> rows change, nearby bins start with nearby embeddings, and the
output layer (tied) can peak at any bin."""

import pytest
import torch
from transformers import AutoProcessor

from modeling_tsn_paligemma import TSNPaliGemmaForConditionalGeneration
from scripts.init_loc_embeddings import init_loc_embeddings, sinusoidal_loc_features

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_features_are_a_smooth_kernel_over_bins_that_can_peak_anywhere():
    features = sinusoidal_loc_features(1024, 64)
    assert features.shape == (1024, 64)
    torch.testing.assert_close(features.norm(dim=1), torch.ones(1024))
    similarity = features @ features[511]
    near, farther, far = similarity[[510, 512]], similarity[[505, 517]], similarity[[300, 900]]
    assert near.min() > farther.max() > far.abs().max()
    for bin in (0, 37, 511, 1023):  # the hidden state equal to a bin's feature scores that bin highest
        assert int((features @ features[bin]).argmax()) == bin
    with pytest.raises(ValueError, match="odd"):
        sinusoidal_loc_features(1024, 63)


def test_only_the_loc_rows_change(tiny_checkpoint, tmp_path):
    base = tiny_checkpoint("direct")
    out = init_loc_embeddings(base, tmp_path / "loc")
    before = TSNPaliGemmaForConditionalGeneration.from_pretrained(base, dtype=torch.float32)
    after = TSNPaliGemmaForConditionalGeneration.from_pretrained(out, dtype=torch.float32)
    ids = AutoProcessor.from_pretrained(out).tokenizer.convert_tokens_to_ids([f"<loc{i:04d}>" for i in range(1024)])
    old, new = before.get_input_embeddings().weight.detach(), after.get_input_embeddings().weight.detach()
    others = torch.ones(old.shape[0], dtype=torch.bool)
    others[ids] = False
    torch.testing.assert_close(new[others], old[others], rtol=0, atol=0)
    scale = old[others].norm(dim=1).mean()
    torch.testing.assert_close(new[ids].norm(dim=1), torch.full((1024,), float(scale)), rtol=1e-5, atol=1e-5)
    assert (new[ids[100]] @ new[ids[101]]) > (new[ids[100]] @ new[ids[400]])
    if after.config.tie_word_embeddings:
        torch.testing.assert_close(after.get_output_embeddings().weight.detach(), new, rtol=0, atol=0)
    for name, tensor in before.state_dict().items():  # every other weight as it was
        if "embed_tokens" not in name and "lm_head" not in name:
            torch.testing.assert_close(after.state_dict()[name], tensor, rtol=0, atol=0, msg=name)
