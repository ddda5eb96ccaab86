"""Text to image (chapters/ch5_text_to_image.py): the tokenizer and text encoder (common.text),
CLIP in miniature (common.eval.clip), cross-attention and its masking, the empty prompt as the
null condition, a save/load round trip, and a quick run of the chapter on the emoji."""

import json

import numpy as np
import pytest

from tests.conftest import colourfulness, needs_font, run_in_process, run_notebook


@pytest.fixture(scope="module")
def tokenizer():
    from common.text import Tokenizer
    return Tokenizer.from_texts(["red heart", "red circle", "blue heart", "赤いハート",
                                 "赤い丸", "青いハート", "blue circle",
                                 "woman medium-light skin tone", "woman dark skin tone"])


def test_tokens_are_words_in_english_and_characters_in_japanese():
    from common.text import split
    assert split("Flag: Côte d’Ivoire") == ["flag", "côte", "d", "ivoire"]
    assert split("woman: medium-light skin tone") == ["woman", "medium-light", "skin", "tone"]
    assert split("赤いハート") == ["赤", "い", "ハ", "ー", "ト"]
    assert split("ＯＫマーク") == ["ok", "マ", "ー", "ク"]  # full-width letters, NFKC


def test_prompts_encode_behind_start_and_pad_with_zeros(tokenizer):
    from common.text import CONTEXT, PAD, START, UNKNOWN
    ids = tokenizer.encode(["red heart", "赤いハート", "", "red zebra"])
    assert ids.shape == (4, CONTEXT) and ids.dtype == np.int32
    assert (ids[:, 0] == START).all()
    assert (ids[0, 3:] == PAD).all() and (ids[1, 6:] == PAD).all()
    assert (ids[2, 1:] == PAD).all()  # the empty prompt: [start] alone
    assert ids[3, 2] == UNKNOWN  # a word seen fewer than twice is [UNK]
    assert tokenizer.decode(ids[:2]) == ["red heart", "赤 い ハ ー ト"]


def test_bad_prompts_get_one_line_that_names_the_problem(tokenizer):
    from common.text import PromptError
    with pytest.raises(PromptError, match="zebra, unicorn") as err:
        tokenizer.check("red zebra unicorn zebra")
    assert "\n" not in str(err.value)
    with pytest.raises(PromptError, match="at most 32"):
        tokenizer.check(" ".join(["red"] * 40))
    assert tokenizer.check("") == ""  # the empty prompt is allowed: unconditional


def test_vocabulary_is_deterministic_and_round_trips(tokenizer, tmp_path):
    from common.text import Tokenizer
    again = Tokenizer.from_texts(["woman dark skin tone", "青いハート", "blue circle",
                                  "red heart", "red circle", "blue heart", "赤いハート",
                                  "赤い丸", "woman medium-light skin tone"])
    assert again.vocabulary == tokenizer.vocabulary
    tokenizer.save(tmp_path / "tokenizer.json")
    loaded = Tokenizer.load(tmp_path / "tokenizer.json")
    assert (loaded.encode(["blue heart"]) == tokenizer.encode(["blue heart"])).all()


def test_cross_attention_ignores_padding_and_would_not_without_the_mask():
    """Random values in the text vectors at padded positions change nothing, with the mask;
    without it they do (so the test can fail)."""
    import keras

    from chapters.ch5_text_to_image import cross_attention
    from common.text import PaddingMask

    image = keras.Input((4, 4, 8))
    text = keras.Input((6, 16))
    tokens = keras.Input((6,), dtype="int32")
    masked = keras.Model([image, text, tokens],
                         cross_attention(image, text, PaddingMask()(tokens), "masked"))
    rng = np.random.default_rng(0)
    h = rng.standard_normal((2, 4, 4, 8)).astype("float32")
    t = rng.standard_normal((2, 6, 16)).astype("float32")
    ids = np.array([[2, 5, 7, 0, 0, 0], [2, 9, 0, 0, 0, 0]], np.int32)
    other = t.copy()
    other[ids == 0] = rng.standard_normal(((ids == 0).sum(), 16))
    first, second = masked.predict([h, t, ids], verbose=0), masked.predict([h, other, ids],
                                                                           verbose=0)
    np.testing.assert_allclose(first, second, atol=1e-5)
    assert masked.predict([h, t, ids], verbose=0).shape == (2, 4, 4, 8)
    everything = np.ones_like(ids)  # a mask that lets the padding in
    assert not np.allclose(masked.predict([h, t, everything], verbose=0),
                           masked.predict([h, other, everything], verbose=0), atol=1e-3)


def test_contrastive_loss_on_a_toy_batch():
    from common.eval.clip import contrastive_loss
    eye = np.eye(4, dtype="float32")
    assert float(contrastive_loss(eye, eye, 100.0)) < 1e-6  # each pair alone: no loss
    same = np.ones((4, 4), "float32")
    assert float(contrastive_loss(same, same, 10.0)) == pytest.approx(np.log(4), abs=1e-5)
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((5, 3)), rng.standard_normal((5, 3))
    an, bn = (v / np.linalg.norm(v, axis=1, keepdims=True) for v in (a, b))
    logits = 3.0 * an @ bn.T

    def cross_entropy(rows):
        return np.mean(np.log(np.exp(rows).sum(axis=1)) - np.diag(rows))
    expected = (cross_entropy(logits) + cross_entropy(logits.T)) / 2
    assert float(contrastive_loss(a.astype("float32"), b.astype("float32"), 3.0)) == \
        pytest.approx(expected, rel=1e-5)


def test_shuffled_names_never_stay_with_their_image():
    from common.eval.clip import shuffled
    texts = [f"name {i}" for i in range(50)]
    moved = shuffled(texts, seed=3)
    assert sorted(moved) == sorted(texts) and all(a != b for a, b in zip(texts, moved))


def test_guidance_mixes_with_the_empty_prompt_as_null():
    """With token rows as labels, guided_eps pairs each prompt with the empty prompt's row."""
    import keras

    from common.diffusion.samplers import guided_eps

    x_in, t_in, p_in = keras.Input((2,)), keras.Input((), dtype="int32"), \
        keras.Input((3,), dtype="int32")
    # a toy predictor: x + the sum of the prompt's ids
    out = keras.layers.Lambda(lambda v: v[0] + keras.ops.cast(
        keras.ops.sum(v[1], axis=1, keepdims=True), "float32"))([x_in, p_in])
    network = keras.Model([x_in, t_in, p_in], out)
    x = np.zeros((2, 2), "float32")
    prompts = np.array([[2, 5, 0], [2, 7, 1]], np.int32)
    null = np.array([2, 0, 0], np.int32)
    eps = np.asarray(guided_eps(network, x, np.array([5, 5]), prompts, 3.0, null))
    # unconditional 2, conditional 7 and 10: 2 + 3 (7 - 2) = 17, 2 + 3 (10 - 2) = 26
    np.testing.assert_allclose(eps, [[17, 17], [26, 26]])


def test_held_out_names_are_trained_elsewhere_word_by_word():
    from chapters.ch5_text_to_image import COLOURED, HELD_OUT
    from common.text import split
    assert not set(HELD_OUT) & set(COLOURED)
    pytest.importorskip("emoji")
    from common.emoji_images import FONT
    if not FONT.exists():
        pytest.skip("needs fonts-noto-color-emoji")
    from common.data import load
    data = load("emoji")
    train = [str(n) for n in data.captions["en"][0]]
    lowered = [n.lower() for n in train]
    for name in HELD_OUT:
        assert name.lower() in lowered, name  # a training emoji, taken out
        others = {w for n in train if n.lower() != name.lower() for w in split(n)}
        assert set(split(name)) <= others, name


def test_foreground_hue_names_the_colour():
    from chapters.ch5_text_to_image import HUES, foreground_hue, nearest_colour
    images = np.ones((len(HUES) + 1, 8, 8, 3), np.float32)  # white ground
    rgb = {"red": (0.9, 0.1, 0.1), "orange": (1.0, 0.55, 0.1), "yellow": (0.95, 0.85, 0.1),
           "green": (0.1, 0.7, 0.2), "blue": (0.1, 0.4, 0.9), "purple": (0.6, 0.2, 0.8)}
    for i, name in enumerate(HUES):
        images[i, 2:6, 2:6] = rgb[name]
    images[-1, 2:6, 2:6] = 0.4  # grey: no colour
    assert nearest_colour(foreground_hue(images)) == [*HUES, None]


def test_the_denoiser_round_trips_in_safe_mode(tmp_path):
    import keras

    from chapters.ch5_text_to_image import build_text_denoiser
    from common.atomic import save_model
    network = build_text_denoiser((8, 8, 8), 20, channels=16)
    save_model(network, tmp_path / "denoiser.keras")
    loaded = keras.saving.load_model(tmp_path / "denoiser.keras", safe_mode=True)
    rng = np.random.default_rng(0)
    inputs = [rng.standard_normal((2, 8, 8, 8)).astype("float32"), np.array([10, 900]),
              np.array([[2, 5, 6] + [0] * 29, [2] + [0] * 31], np.int32)]
    np.testing.assert_allclose(network.predict(inputs, verbose=0),
                               loaded.predict(inputs, verbose=0), atol=1e-6)


def test_summary_vocabulary_is_the_emoji_names():
    """--summary builds the denoiser for EMOJI_VOCABULARY ids without the data: it must be
    the size of the tokenizer the chapter builds."""
    from chapters.ch5_text_to_image import EMOJI_VOCABULARY, LANGUAGES, held_out, keep
    from common.emoji_images import FONT
    from common.text import Tokenizer
    if not FONT.exists():
        pytest.skip("needs fonts-noto-color-emoji")
    from common.data import load
    data = load("emoji")
    train = keep(data, held_out(data)[0])
    size = Tokenizer.from_texts([str(t) for lang in LANGUAGES
                                 for t in train.captions[lang][0]]).size
    assert size == EMOJI_VOCABULARY


@needs_font
def test_quick_run_on_emoji(tmp_path, capsys):
    """The chapter's notebook as a smoke test (a Japanese prompt among its rows), then the
    one-line answers to a prompt with unknown words and to data without names."""
    import keras
    out = tmp_path / "ch5_text_to_image"
    ran = run_notebook("ch5_text_to_image", out, dataset="emoji", PROMPT=["赤いハート"],
                       FID_SAMPLES=40)
    assert "emoji" in ran.text and "Total params" in ran.text and ran.images >= 4
    metrics = json.loads((out / "metrics.json").read_text())
    model = metrics["models"]["text_to_image"]
    for part in ("trained_prompts", "real_test_emoji"):
        assert set(model[part]) == {"own", "shuffled"}
    assert model["fid"]["classifier_fid"] > 0 and "retrieval" in metrics["clip"]
    assert set(model["colour"]) == {"held_out", "trained", "trained_shuffled"}
    for name in ("prompts.png", "guidance.png", "cross_attention.png", "data.png"):
        assert (out / name).stat().st_size > 0, name
    assert colourfulness(out / "prompts.png") > 0.01
    for name in ("encoder.keras", "decoder.keras", "text_denoiser_ema.keras"):
        keras.saving.load_model(out / name, safe_mode=True)  # a plain Keras load

    bad = run_in_process(capsys, "ch5_text_to_image", "--quick", "--out", tmp_path / "bad",
                         "--prompt", "purple zebra")
    lines = bad.stderr.strip().splitlines()
    assert bad.returncode == 2 and len(lines) == 1 and "zebra" in lines[0]
    assert not (tmp_path / "bad").exists()  # nothing half-written
    grey = run_in_process(capsys, "ch5_text_to_image", "--quick", "--out", tmp_path / "grey",
                          "--dataset", "mnist5k")
    assert grey.returncode == 2 and "--dataset emoji" in grey.stderr
