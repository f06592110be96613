"""Bad TSN values raise ValueError naming the field and value, at construction and as overrides."""

import pytest
from transformers import AutoConfig

from configuration_tsn_paligemma import TSNPaliGemmaConfig

BAD_VALUES = [
    ({"tsn_integration": "concat"}, "tsn_integration='concat'"),
    ({"tsn_backbone": "vgg16"}, "tsn_backbone='vgg16'"),
    ({"tsn_segment_scales": [[0, 1]]}, r"tsn_segment_scales=\[\[0, 1\]\]"),
    ({"tsn_segment_scales": [[1, 1], [1, 1]]}, "tsn_segment_scales="),
    ({"tsn_segment_scales": []}, "tsn_segment_scales="),
    ({"tsn_backbone": "inception_v3", "tsn_crop_size": 64}, "tsn_crop_size=64.*inception_v3.*75"),
    ({"tsn_crop_size": 16}, "tsn_crop_size=16.*resnet18.*32"),
    ({"tsn_ratio": 1.5}, r"tsn_ratio=1\.5.*\[0, 1\]"),
    ({"tsn_original_ratio": -0.1}, r"tsn_original_ratio=-0\.1"),
    ({"tsn_generation_ratio": 2.0}, "tsn_generation_ratio=2.0"),
    ({"tsn_consensus": "median"}, "tsn_consensus='median'"),
    ({"tsn_fusion": "sum"}, "tsn_fusion='sum'"),
    ({"tsn_dropout": 1.0}, "tsn_dropout=1.0"),
    ({"tsn_pretrained_backbone": "yes"}, "tsn_pretrained_backbone='yes'"),
]


@pytest.mark.parametrize(
    "kwargs,message", BAD_VALUES, ids=[next(iter(k)) + str(i) for i, (k, _) in enumerate(BAD_VALUES)]
)
def test_bad_values_raise_at_construction(kwargs, message):
    with pytest.raises(ValueError, match=message):
        TSNPaliGemmaConfig(**kwargs)


@pytest.mark.parametrize(
    "kwargs,message", BAD_VALUES, ids=[next(iter(k)) + str(i) for i, (k, _) in enumerate(BAD_VALUES)]
)
def test_bad_values_raise_as_from_pretrained_overrides(tmp_path, kwargs, message):
    TSNPaliGemmaConfig().save_pretrained(tmp_path)
    with pytest.raises(ValueError, match=message):
        TSNPaliGemmaConfig.from_pretrained(tmp_path, **kwargs)
    with pytest.raises(ValueError, match=message):
        AutoConfig.from_pretrained(tmp_path, trust_remote_code=True, **kwargs)


def test_model_from_pretrained_override_is_validated(tiny_checkpoint):
    from modeling_tsn_paligemma import TSNPaliGemmaForConditionalGeneration

    with pytest.raises(ValueError, match="tsn_integration='fusion'"):
        TSNPaliGemmaForConditionalGeneration.from_pretrained(tiny_checkpoint("enhanced"), tsn_integration="fusion")


def test_defaults_round_trip_and_image_token_counts(tmp_path):
    config = TSNPaliGemmaConfig()
    assert (config.tsn_integration, config.tsn_backbone, config.tsn_fusion) == ("enhanced", "resnet18", "gated")
    assert config.tsn_segment_scales == [[1, 1], [2, 2]] and config.num_segments == 5
    assert config.image_seq_length == 256
    config.save_pretrained(tmp_path)
    loaded = AutoConfig.from_pretrained(tmp_path, trust_remote_code=True, tsn_integration="replace")
    assert loaded.tsn_segment_scales == [[1, 1], [2, 2]]
    assert loaded.image_seq_length == 5 * 7 * 7
    assert (
        TSNPaliGemmaConfig(tsn_integration="adapter", tsn_segment_scales=[[1, 1], [2, 2], [4, 4]]).image_seq_length
        == 256 + 21
    )
    assert loaded.auto_map["AutoModel"] == "modeling_tsn_paligemma.TSNPaliGemmaForConditionalGeneration"
