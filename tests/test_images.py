"""images.py: one conversion to 8-bit RGB. A file gives the same pixels to the importer that writes the training
data (dataset_builder.importers), to evaluation and inference (`images.load_image`) and, through `to_rgb`, to a
collator that receives it as an open PIL image; 8-bit RGB files keep their pixels exactly."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import app
import images
import inference as inference_cli
from dataset_builder.importers import ImportRecord, write_risc

CAPTIONS = [f"caption number {i} of an aerial image ." for i in range(1, 6)]


@pytest.fixture(scope="module")
def aerial(sample_image_paths) -> Image.Image:
    """A real aerial RGB image (the bundled sample), the source of every test file."""
    return Image.open(sample_image_paths[0]).convert("RGB")


def sixteen_bit_tiff(aerial: Image.Image, folder: Path) -> Path:
    """A 16-bit grayscale TIFF filling only part of its range, as remote-sensing products do."""
    gray = np.asarray(aerial.convert("L"), dtype=np.uint16)
    path = folder / "gray16.tif"
    Image.fromarray(gray * 40 + 1000).save(path)  # 1000..11200 of 0..65535
    return path


def rgba_png(aerial: Image.Image, folder: Path) -> Path:
    """RGBA with transparent, half-transparent and opaque bands."""
    width, height = aerial.size
    alpha = np.zeros((height, width), dtype=np.uint8)
    alpha[:, width // 3 :] = 128
    alpha[:, 2 * width // 3 :] = 255
    rgba = aerial.copy()
    rgba.putalpha(Image.fromarray(alpha))
    path = folder / "rgba.png"
    rgba.save(path)
    return path


def palette_gif(aerial: Image.Image, folder: Path) -> Path:
    """A 64-colour GIF whose most frequent index is transparent."""
    palette = aerial.quantize(colors=64)
    counts = np.bincount(np.asarray(palette).ravel())
    path = folder / "palette.gif"
    palette.save(path, transparency=int(counts.argmax()))
    return path


def cmyk_jpeg(aerial: Image.Image, folder: Path) -> Path:
    path = folder / "cmyk.jpg"
    aerial.convert("CMYK").save(path, quality=95)
    return path


ODD_FILES = {"16-bit TIFF": sixteen_bit_tiff, "RGBA PNG": rgba_png, "palette GIF": palette_gif, "CMYK JPEG": cmyk_jpeg}
EXPECTED_MODES = {"16-bit TIFF": "I;16", "RGBA PNG": "RGBA", "palette GIF": "P", "CMYK JPEG": "CMYK"}


def training_pixels(source: Path, tmp_path: Path, monkeypatch) -> np.ndarray:
    """The pixels the importer encodes for `source` (write_risc at full size): the array handed to the JPEG encoder,
    caught before JPEG's loss."""
    encoded = []
    save = Image.Image.save

    def spy(image, fp, format=None, **params):
        encoded.append(np.array(image))
        assert image.mode == "RGB" and format == "JPEG"
        return save(image, fp, format, **params)

    record = ImportRecord("RSICD", "train", source.name, CAPTIONS, origin="test")
    with monkeypatch.context() as patch:
        patch.setattr(Image.Image, "save", spy)
        summary = write_risc([record], source.parent, tmp_path / "risc", size=None, num_threads=1)
    assert summary.num_written == 1 and not summary.skipped
    assert (tmp_path / "risc" / "resized" / record.output_name).is_file()
    assert len(encoded) == 1
    return encoded[0]


@pytest.mark.parametrize("kind", ODD_FILES)
def test_training_and_inference_see_the_same_pixels(kind, aerial, tmp_path, monkeypatch):
    source_dir = tmp_path / "images"
    source_dir.mkdir()
    source = ODD_FILES[kind](aerial, source_dir)
    with Image.open(source) as opened:
        assert opened.mode == EXPECTED_MODES[kind]
    inference = np.asarray(inference_cli.load_image(source))
    assert inference.dtype == np.uint8 and inference.shape == (aerial.height, aerial.width, 3)
    np.testing.assert_array_equal(training_pixels(source, tmp_path, monkeypatch), inference)
    with Image.open(source) as opened:  # a row that arrives as an open PIL image (datasets) gets them too
        np.testing.assert_array_equal(np.asarray(images.to_rgb(opened)), inference)


def test_the_conversion_rules(aerial, tmp_path):
    gray16 = np.asarray(images.load_image(sixteen_bit_tiff(aerial, tmp_path)))
    assert gray16.min() == 0 and gray16.max() == 255  # stretched from its own min..max, not /257 nor by the peak
    assert (gray16[..., 0] == gray16[..., 2]).all()

    rgba = np.asarray(images.load_image(rgba_png(aerial, tmp_path))).astype(int)
    original = np.asarray(aerial).astype(int)
    width = aerial.width
    assert (rgba[:, : width // 3] == 255).all()  # transparent: the white background
    np.testing.assert_array_equal(rgba[:, 2 * width // 3 :], original[:, 2 * width // 3 :])  # opaque: as is
    half = rgba[:, width // 3 : 2 * width // 3] - (original[:, width // 3 : 2 * width // 3] + 255) / 2
    assert np.abs(half).max() <= 1.5  # half-transparent: halfway to white

    gif = tmp_path / "gif"
    gif.mkdir()
    with Image.open(palette_gif(aerial, gif)) as opened:
        transparent = np.asarray(opened) == opened.info["transparency"]
    assert transparent.any() and (np.asarray(images.load_image(gif / "palette.gif"))[transparent] == 255).all()

    flat = Image.fromarray(np.full((3, 3), 700, dtype=np.uint16))
    assert np.asarray(images.to_rgb(flat)).max() == 0  # no range to stretch: black


def test_8bit_rgb_pixels_are_kept_exactly(sample_image_paths, tmp_path, monkeypatch):
    path = sample_image_paths[1]
    expected = np.asarray(Image.open(path).convert("RGB"))
    np.testing.assert_array_equal(np.asarray(inference_cli.load_image(path)), expected)
    np.testing.assert_array_equal(np.asarray(images.to_rgb(Image.open(path))), expected)
    record = ImportRecord("RSICD", "train", path.name, CAPTIONS, origin="test")
    write_risc([record], path.parent, tmp_path / "risc", size=None)  # the right size already: copied as is
    assert (tmp_path / "risc" / "resized" / record.output_name).read_bytes() == path.read_bytes()
    png = tmp_path / "images" / "rgb.png"  # an RGB file the importer re-encodes: the array it encodes
    png.parent.mkdir()
    Image.open(path).save(png)
    np.testing.assert_array_equal(training_pixels(png, tmp_path / "png", monkeypatch), expected)


def test_too_many_pixels_are_refused_before_decoding(sample_image_paths):
    with pytest.raises(ValueError, match="over the limit of 1,000 pixels"):
        images.load_image(sample_image_paths[0], max_pixels=1000)
    assert app.IMAGE_ERRORS is images.IMAGE_ERRORS and inference_cli.load_image is app.load_image is images.load_image
