"""The emoji dataset (common/emoji_images.py): colour pictures with names in two languages,
drawn offline from Debian's Noto Color Emoji; and pix2pix's line art of them."""

import numpy as np
import pytest

from common import emoji_images
from tests.conftest import run_in_process

needs_font = pytest.mark.skipif(not emoji_images.FONT.exists(),
                                reason="needs Debian's fonts-noto-color-emoji")
A_FEW = ["😀", "❤️", "🐱", "👍", "👍🏻", "👍🏽", "👍🏿", "🇯🇵", "🍣", "🚀", "💜", "🟪"]


@needs_font
def test_a_handful_draws_in_colour_with_both_names_and_the_same_twice():
    first = emoji_images.build(A_FEW, progress=False)
    assert len(first["char"]) == len(A_FEW)  # each one glyph of the font
    for size in emoji_images.SIZES:
        pictures = first[f"x{size}"]
        assert pictures.shape == (len(A_FEW), size, size, 3) and pictures.dtype == np.uint8
        assert pictures.min() < 60 and pictures.max() == 255  # dark strokes on white
        round_ones = [list(first["char"]).index(c) for c in ("😀", "❤️", "🐱")]
        assert (pictures[round_ones, 0, 0] == 255).all()  # composited on white
    names = dict(zip(first["char"], zip(first["en"], first["ja"])))
    assert names["❤️"] == ("red heart", "赤いハート")
    assert names["🐱"] == ("cat face", "ネコの顔")
    assert names["🇯🇵"][0] == "flag: Japan" and "日本" in names["🇯🇵"][1]
    assert names["👍🏿"][0] == "thumbs up dark skin tone"
    groups = dict(zip(first["char"], first["group"]))
    assert emoji_images.GROUPS[groups["🐱"]] == "Animals & Nature"
    assert emoji_images.GROUPS[groups["👍🏽"]] == "People & Body"
    assert emoji_images.GROUPS[groups["🇯🇵"]] == "Flags"
    heart = first["x32"][list(first["char"]).index("❤️")].astype(int)
    assert (heart[..., 0] - heart[..., 1]).max() > 150  # red, in colour
    again = emoji_images.build(list(reversed(A_FEW)), progress=False)
    assert emoji_images.checksum(again) == emoji_images.checksum(first)  # a fixed order


@needs_font
def test_skin_tone_variants_share_a_key_and_a_side_of_the_split():
    thumbs = [e for e in emoji_images.catalogue() if e.en.startswith("thumbs up")]
    assert len(thumbs) == 6 and len({e.key for e in thumbs}) == 1
    drawn = emoji_images.build([e.char for e in thumbs], progress=False)
    assert len(set(drawn["test"])) == 1
    everything = emoji_images.catalogue()  # and over all emoji: one side per key
    sides = {}
    for e in everything:
        sides.setdefault(e.key, set()).add(emoji_images.in_test(e.key))
    assert all(len(s) == 1 for s in sides.values())
    share = np.mean([emoji_images.in_test(k) for k in sides])
    assert 0.15 < share < 0.25, share  # one key in five


@needs_font
def test_the_loader_gives_rgb_data_names_and_provenance():
    from common.data import load
    data = load("emoji", limit=64)
    assert data.image_shape == (32, 32, 3) and data.num_classes == 9
    assert 0.0 <= data.x_train.min() and data.x_train.max() <= 1.0
    en, ja = data.captions["en"], data.captions["ja"]
    assert len(en[0]) == len(data.x_train) == 64 and len(ja[1]) == len(data.x_test)
    assert set(data.y_train[:64]) > {1, 2}  # the fixed permutation mixes the groups
    record = data.as_dict()["provenance"]
    assert record["font"].startswith("Noto Color Emoji") and record["emoji"]
    assert record["train_emoji"] > 2500 and record["test_emoji"] > 500
    assert len(record["checksum"]) == 16
    big = load("emoji", limit=4, resolution=64)
    assert big.image_shape == (64, 64, 3)


def test_a_missing_font_is_one_line_naming_the_debian_package(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv(emoji_images.FONT_ENV, "/nowhere.ttf")
    result = run_in_process(capsys, "ch4_pix2pix", "--quick", "--dataset", "emoji",
                            "--out", tmp_path / "o")
    assert result.returncode == 2, result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ch4_pix2pix.py: error:")
    assert "fonts-noto-color-emoji" in lines[0] and "/nowhere.ttf" in lines[0]
    assert not (tmp_path / "o").exists()


def test_line_art_is_black_lines_on_white_where_the_picture_changes():
    from chapters.ch4_pix2pix import line_art
    x = np.ones((2, 32, 32, 3), "float32")
    x[0, 8:24, 8:24] = (1.0, 0.0, 0.0)  # a red square on white
    art = line_art(x)
    assert art.shape == (2, 32, 32, 1) and set(np.unique(art)) <= {0.0, 1.0}
    assert art[1].min() == 1.0  # a blank picture has no lines
    assert art[0, 16, 16, 0] == 1.0 and art[0, 2, 2, 0] == 1.0  # inside and outside: white
    assert art[0, 16, 7:9, 0].min() == 0.0 and art[0, 7:9, 16, 0].min() == 0.0  # the outline
    assert (art[0] == 0).sum() < 4 * 18 * 2  # lines, not areas


def test_colour_error_is_zero_for_the_truth_and_100_from_black_to_white():
    from common.eval.metrics import colour_error, srgb_to_lab
    np.testing.assert_allclose(srgb_to_lab(np.array([1.0, 1.0, 1.0])), [100, 0, 0], atol=0.02)
    np.testing.assert_allclose(srgb_to_lab(np.array([1.0, 0.0, 0.0])), [53.24, 80.09, 67.20],
                               atol=0.05)  # sRGB red, as colour references give it
    white = np.ones((4, 8, 8, 3))
    assert colour_error(white, white)["colour_error_delta_e"] == 0.0
    report = colour_error(np.zeros_like(white), white)
    assert report["colour_error_delta_e"] == pytest.approx(100.0, abs=0.05)
    low, high = report["colour_error_ci95"]
    assert low <= report["colour_error_delta_e"] <= high


def test_the_grey_input_of_colourise_keeps_the_light_and_drops_the_colour():
    from chapters.ch4_pix2pix import make_inputs
    x = np.zeros((1, 4, 4, 3), "float32")
    x[0, :2] = (1.0, 0.0, 0.0)  # red above, black below
    grey = make_inputs("colourise", x, seed=0)
    assert grey.shape == (1, 4, 4, 1)
    np.testing.assert_allclose(grey[0, 0, 0, 0], 0.299, rtol=1e-6)  # BT.601 luma of red
    assert grey[0, 3, 3, 0] == 0.0
