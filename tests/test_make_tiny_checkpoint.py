"""scripts/make_tiny_checkpoint.py's from-scratch presets: the equal-size ablation pair really is of equal size."""

from scripts.make_tiny_checkpoint import TinyCheckpointArguments, build_tiny_model


def _parameters(tmp_path, preset: str, integration: str) -> int:
    args = TinyCheckpointArguments(output_dir=str(tmp_path / preset), preset=preset, integration=integration)
    model, _ = build_tiny_model(args)
    return sum(parameter.numel() for parameter in model.parameters())


def test_the_wide_direct_preset_matches_enhanced_within_five_percent(tmp_path):
    enhanced = _parameters(tmp_path, "rsicd-mini", "enhanced")
    direct = _parameters(tmp_path, "rsicd-mini", "direct")
    wide = _parameters(tmp_path, "rsicd-mini-wide", "direct")
    assert enhanced - direct > 11_000_000  # the ResNet18 and the fusion: what `direct` leaves out
    assert abs(wide - enhanced) / enhanced < 0.05, (wide, enhanced)
