"""Figures a learner expects, drawn headless (matplotlib Agg) and written atomically.

Images may be given as NHWC arrays or as flat vectors (the dense models' 784 = 28x28, the
CNN models' 1024 = 32x32, or 3,072 = 32x32x3 in colour); `as_images` turns either into
(N, H, W) grey or (N, H, W, 3) colour images, and `show` draws one either way.
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)
import matplotlib.ticker  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.patches import Ellipse, Rectangle  # noqa: E402

from common import notebooks  # noqa: E402
from common.atomic import atomic_path  # noqa: E402
from common.language import say  # noqa: E402


def save(fig, path: str | Path, inline: bool = True) -> Path:
    """Write `fig` as PNG under a temporary name, rename it into place, close it; in a
    notebook, show it under the running cell too (unless `inline` is False)."""
    path = Path(path)
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png")
    finally:
        plt.close(fig)
    if inline:
        notebooks.show(path)
    return path


def as_images(x: np.ndarray) -> np.ndarray:
    """(N, H, W[, 1]) or (N, H*W) -> (N, H, W); (N, H, W, 3) or (N, H*W*3) -> (N, H, W, 3).
    Flat vectors must be square images, grey or colour."""
    x = np.asarray(x)
    if x.ndim == 2:
        length = x.shape[1]
        for channels in (1, 3):
            side = math.isqrt(length // channels)
            if side * side * channels == length:
                shape = (side, side) if channels == 1 else (side, side, channels)
                return x.reshape(len(x), *shape)
        raise ValueError(f"cannot show vectors of length {length} as square images")
    if x.ndim == 4 and x.shape[-1] == 1:
        return x[..., 0]
    return x


def show(ax, image, **kwargs):
    """imshow for a [0, 1] image: grey (H, W) on the gray colour map, colour (H, W, 3) as is."""
    image = np.clip(image, 0.0, 1.0)
    if image.ndim == 3:
        return ax.imshow(image, **kwargs)
    return ax.imshow(image, cmap="gray", vmin=0, vmax=1, **kwargs)


def image_grid(images, path, *, ncols: int = 10, titles=None, row_labels=None,
               suptitle: str | None = None, cell: float = 1.0, inline: bool = True) -> Path:
    """Images in rows of `ncols`; optional per-image titles and per-row labels. The grid is
    one picture (the images tiled with white gaps), not one matplotlib axes per image: a
    10x10 grid draws in a tenth of the time."""
    images = np.clip(as_images(images), 0.0, 1.0)
    nrows = math.ceil(len(images) / ncols)
    h, w = images.shape[1:3]
    gap = max(1, h // 14)
    band = round(0.3 * h) if titles is not None else 0  # room for each row's titles
    row_h, col_w = band + h + gap, w + gap
    canvas = np.ones((nrows * row_h, ncols * col_w, *images.shape[3:]), np.float32)
    for i, image in enumerate(images):
        top, left = (i // ncols) * row_h + band, (i % ncols) * col_w
        canvas[top:top + h, left:left + w] = image
    canvas = canvas[:-gap, :-gap]  # no gap after the last row and column
    width, height = cell * ncols, cell * nrows * row_h / h
    fig = plt.figure(figsize=(width, height))
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_axis_off()
    show(ax, canvas, interpolation="nearest", aspect="equal")
    for i, title in enumerate(titles if titles is not None else []):
        ax.text((i % ncols) * col_w + w / 2, (i // ncols) * row_h + band / 2, str(title),
                ha="center", va="center", fontsize=7)
    for r, label in enumerate(row_labels if row_labels is not None else []):
        ax.text(-2 * gap, r * row_h + band + h / 2, str(label), ha="right", va="center",
                fontsize=8)
    if suptitle:
        ax.set_title(suptitle, fontsize=10)
    return save(fig, path, inline=inline)


def curves(series: dict[str, list[float]], path, *, title: str, ylabel: str,
           xlabel: str | None = None, hline: float | None = None, logy: bool = False,
           x=None, logx: bool = False, references: dict[str, float] | None = None) -> Path:
    """Line plot of named series (e.g. train and validation loss per epoch, or against `x`:
    one list for all, or {name: list} per series), with optional dashed reference levels
    `references` {label: y}."""
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for name, values in series.items():
        xs = range(1, len(values) + 1) if x is None else x[name] if isinstance(x, dict) else x
        ax.plot(xs, values, marker="o", markersize=3, label=name)
    if hline is not None:
        ax.axhline(hline, color="gray", linestyle="--", linewidth=1)
    reference_lines(ax, references)
    if logy:
        ax.set_yscale("log")
    if logx:  # ticks at the plotted x values, written plainly (20, not 2x10^1)
        ax.set_xscale("log")
        if x is not None:
            ticks = sorted({v for xs in (x.values() if isinstance(x, dict) else [x])
                            for v in xs})
            ax.set_xticks(ticks, [f"{v:g}" for v in ticks])
            ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
    if x is None:  # epochs are whole numbers
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.set(title=title, xlabel=xlabel or say("epoch", "エポック"), ylabel=ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save(fig, path)


def reference_lines(ax, references: dict[str, float] | None) -> None:
    """Gray horizontal lines at the levels of {label: y}, each in its own dash style."""
    for (label, y), style in zip((references or {}).items(), ("--", ":", "-.")):
        ax.axhline(y, color="gray", linestyle=style, linewidth=1, label=label)


def curve_panels(panels, path, *, suptitle: str, xlabel: str | None = None) -> Path:
    """Several line plots side by side: `panels` is a list of (title, series, ylabel), each
    optionally with a 4th item {label: y} of dashed reference lines."""
    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 3.6), squeeze=False,
                             layout="constrained")
    for ax, (title, series, ylabel, *rest) in zip(axes[0], panels):
        for name, values in series.items():
            ax.plot(range(1, len(values) + 1), values, marker="o", markersize=3, label=name)
        reference_lines(ax, rest[0] if rest else None)
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        ax.set(title=title, xlabel=xlabel or say("epoch", "エポック"), ylabel=ylabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(suptitle, fontsize=10)
    return save(fig, path)


def bars(groups: dict[str, list[float]], path, *, title: str, xlabel: str, ylabel: str,
         labels=None) -> Path:
    """Grouped bar chart: one colour per group (e.g. a model), one slot per index."""
    n = max(len(v) for v in groups.values())
    width = 0.8 / len(groups)
    fig, ax = plt.subplots(figsize=(max(6.0, 0.45 * n * len(groups) + 2), 3.6))
    for g, (name, values) in enumerate(groups.items()):
        ax.bar(np.arange(len(values)) + (g - (len(groups) - 1) / 2) * width, values, width,
               label=name)
    ax.set_xticks(range(n), labels if labels is not None else range(n), fontsize=7)
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=8)
    return save(fig, path)


def prediction_grid(images, y_true, y_pred, class_names, path, *, title: str) -> Path:
    """Per class, up to three correct (top rows) and three wrong (bottom rows) predictions."""
    images = as_images(images)
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    k, n = 3, len(class_names)
    fig, axes = plt.subplots(2 * k, n, figsize=(1.1 * n, 1.25 * 2 * k), squeeze=False)
    for c in range(n):
        right = np.flatnonzero((y_true == c) & (y_pred == c))[:k]
        wrong = np.flatnonzero((y_true == c) & (y_pred != c))[:k]
        for r in range(2 * k):
            ax = axes[r, c]
            ax.axis("off")
            picks, row = (right, r) if r < k else (wrong, r - k)
            if row < len(picks):
                i = picks[row]
                show(ax, images[i])
                color = "green" if y_pred[i] == y_true[i] else "red"
                ax.set_title(f"pred {class_names[y_pred[i]]}"[:16], fontsize=6, color=color)
        axes[0, c].set_title(f"{class_names[c]}\n" + axes[0, c].get_title(), fontsize=6)
    fig.suptitle(f"{title}: correct (top {k} rows) and wrong (bottom {k} rows) per true class",
                 fontsize=9)
    return save(fig, path)


def latent_scatter(ax, z, labels, class_names, *, title: str, limit: float | None = None):
    """Scatter a 2-D latent code coloured by class on `ax` (one of several panels)."""
    z = np.asarray(z)
    points = ax.scatter(z[:, 0], z[:, 1], c=labels, cmap="tab10", s=2, alpha=0.6,
                        vmin=-0.5, vmax=len(class_names) - 0.5)
    ax.set(title=title, xlabel="z[0]", ylabel="z[1]")
    if limit is not None:
        ax.set_xlim(-limit, limit)
        ax.set_ylim(-limit, limit)
    ax.grid(alpha=0.3)
    return points


def scatter_panels(panels, labels, class_names, path, *, suptitle: str) -> Path:
    """Side-by-side latent scatters: `panels` is a list of (title, z) pairs."""
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 4.6), squeeze=False)
    for ax, (title, z) in zip(axes[0], panels):
        points = latent_scatter(ax, z, labels, class_names, title=title)
    bar = fig.colorbar(points, ax=axes[0].tolist(), ticks=range(len(class_names)))
    bar.ax.set_yticklabels(class_names, fontsize=7)
    bar.set_label(say("class of the test image", "テスト画像のクラス"), fontsize=8)
    fig.suptitle(suptitle, fontsize=10)
    return save(fig, path)


def decoded_grid(images, path, *, extent, title: str, xlabel="z[0]", ylabel="z[1]") -> Path:
    """A (rows, cols, H, W[, 3]) block of decoded images shown as one picture over latent
    axes.

    Row 0 is drawn at the top, so callers put the largest z[1] in row 0. `extent` is
    (left, right, bottom, top) in latent units, used only to label the axes.
    """
    images = np.asarray(images)
    rows, cols, h, w = images.shape[:4]
    mosaic = images.swapaxes(1, 2).reshape(rows * h, cols * w, *images.shape[4:])
    fig, ax = plt.subplots(figsize=(7, 7))
    show(ax, mosaic, extent=extent, aspect="auto")
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    return save(fig, path)


def code_map(image, codes, path, *, title: str) -> Path:
    """An image beside the grid of discrete codes that stands for it, each cell labelled."""
    codes = np.asarray(codes)
    fig, (left, right) = plt.subplots(1, 2, figsize=(8, 4), layout="constrained")
    show(left, as_images(np.asarray(image)[None])[0])
    left.set_title("input", fontsize=9)
    right.imshow(codes, cmap="tab20", interpolation="nearest")
    for (i, j), code in np.ndenumerate(codes):
        right.text(j, i, str(code), ha="center", va="center", fontsize=8)
    right.set_title("code indices", fontsize=9)
    for ax in (left, right):
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(title, fontsize=10)
    return save(fig, path)


def attention_maps(images, maps, path, *, titles, title: str) -> Path:
    """Each image above a heatmap of one position's attention over its grid; `maps` is
    (N, H, W) with NaN at the position that asks (drawn as a red square)."""
    images, maps = as_images(images), np.asarray(maps)
    n = len(images)
    fig, axes = plt.subplots(2, n, figsize=(1.5 * n, 3.4), squeeze=False, layout="constrained")
    for j in range(n):
        show(axes[0, j], images[j])
        axes[0, j].set_title(str(titles[j]), fontsize=7)
        shown = axes[1, j].imshow(np.nan_to_num(maps[j], nan=0.0), cmap="viridis", vmin=0)
        for i, k in zip(*np.nonzero(np.isnan(maps[j]))):
            axes[1, j].add_patch(Rectangle(
                (k - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="red", linewidth=1.5))
        fig.colorbar(shown, ax=axes[1, j], shrink=0.6)
        for ax in axes[:, j]:
            ax.set_xticks([])
            ax.set_yticks([])
    axes[1, 0].set_ylabel("attention", fontsize=8)
    fig.suptitle(title, fontsize=10)
    return save(fig, path)


def filters_and_maps(kernels, images, maps, path, *, filter_names, title: str) -> Path:
    """Each filter's kernel, then for each input image its feature maps (one column each)."""
    kernels, images, maps = np.asarray(kernels), as_images(images), np.asarray(maps)
    n_img, n_f = len(images), kernels.shape[-1]
    fig, axes = plt.subplots(n_f + 1, n_img + 1, figsize=(1.4 * (n_img + 1), 1.5 * (n_f + 1)),
                             squeeze=False)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0, 0].axis("off")
    for j in range(n_img):
        show(axes[0, j + 1], images[j])
        axes[0, j + 1].set_title("input", fontsize=7)
    for f in range(n_f):
        k = kernels[..., f]
        bound = np.abs(k).max() or 1.0
        axes[f + 1, 0].imshow(k, cmap="bwr", vmin=-bound, vmax=bound)
        axes[f + 1, 0].set_ylabel(filter_names[f], fontsize=7)
        for j in range(n_img):
            axes[f + 1, j + 1].imshow(maps[j, ..., f], cmap="magma")
    fig.suptitle(title, fontsize=9)
    return save(fig, path)


def gaussian_ellipse(ax, mean, cov, *, n_std: float = 2.0, **style):
    """Draw the n_std-sigma contour ellipse of a 2-D Gaussian on `ax` (axes from the
    covariance's eigenvectors, radii n_std * sqrt(eigenvalues))."""
    values, vectors = np.linalg.eigh(np.asarray(cov)[:2, :2])
    angle = np.degrees(np.arctan2(vectors[1, -1], vectors[0, -1]))
    width, height = 2 * n_std * np.sqrt(np.maximum(values[::-1], 0))
    ax.add_patch(Ellipse(mean[:2], width, height, angle=angle, fill=False, **style))


def data_grid(data, path, per_class: int = 8) -> Path:
    """The first `per_class` training images of every class, one row each, labelled: what a
    chapter trains on. Flat images are shown square."""
    labels = np.asarray(data.y_train)
    rows = [np.flatnonzero(labels == c)[:per_class] for c in range(data.num_classes)]
    picks = np.concatenate(rows)
    images = as_images(data.x_train[picks])
    shown = np.zeros((len(rows) * per_class, *images.shape[1:]), images.dtype)
    for r, row in enumerate(rows):  # a class with fewer images leaves its row's end blank
        start = sum(len(x) for x in rows[:r])
        shown[r * per_class: r * per_class + len(row)] = images[start:start + len(row)]
    return image_grid(shown, path, ncols=per_class, row_labels=data.class_names,
                      suptitle=say(f"{data.name}: the first {per_class} training images of "
                                   f"each class ({len(data.x_train):,} in all)",
                                   f"{data.name}: クラスごとに最初の {per_class} 枚の訓練画像"
                                   f"（全 {len(data.x_train):,} 枚）"))
