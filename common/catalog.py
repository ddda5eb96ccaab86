"""The chapters, in the order they build on each other, and what each needs: data that
`chapters/run_all.py`, the README's checks and the docs all read, instead of each keeping its
own list.

`reads` names the earlier run a chapter needs (the flag that points at it, the chapter, and
the file it takes, if one); `optional` runs are used only where they exist. `compares` names
chapters whose finished runs the chapter puts its numbers beside.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Needs:
    flag: str  # how the chapter is pointed at the run: --run, --latents
    chapter: str
    file: str = ""  # a file of that run, or "" for its folder
    optional: bool = False  # used where it exists, skipped otherwise


@dataclass(frozen=True)
class Chapter:
    name: str
    figure: str  # the figure a learner opens first
    takes_dataset: bool = True
    reads: tuple[Needs, ...] = ()
    compares: tuple[str, ...] = ()
    title_ja: str = ""  # the first line of --help in Japanese (common.language)


CHAPTERS = (
    Chapter("ch1_classifiers", "predictions_cnn.png",
            title_ja="第1章: 同じ画像で強さの違う3つの分類器（線形、多層、CNN）"),
    Chapter("ch1_edge_filters", "edges_strokes.png",
            title_ja="第1章: 手で作った2枚のエッジ検出フィルターによる畳み込み（学習の前に）"),
    Chapter("ch2_dense_autoencoder", "reconstructions.png",
            title_ja="第2章: 全結合のオートエンコーダと16次元の潜在空間"),
    Chapter("ch2_vae", "latent_scatter.png",
            title_ja="第2章: 畳み込みオートエンコーダから変分オートエンコーダへ（本の形）"),
    Chapter("classical_normal", "central_limit.png", takes_dataset=False,
            title_ja="古典: 正規分布、中心極限定理、最尤推定、当てはめた分布からの生成"),
    Chapter("classical_gmm_em", "gmm_vae_samples.png", takes_dataset=False,
            reads=(Needs("--latents", "ch2_vae", "latents.npz", optional=True),),
            title_ja="古典: 混合ガウスモデルと EM アルゴリズム、VAE の潜在変数への当てはめ"),
    Chapter("ch3_vae", "traversals_conv.png",
            title_ja="第3章: 損失をレイヤーで足す VAE、beta と KL アニーリング"),
    Chapter("ch3_cvae", "same_z_every_class.png",
            title_ja="第3章: 条件付き VAE（クラスを指定して描く）"),
    Chapter("ch3_vqvae", "samples.png", compares=("ch2_vae",),
            title_ja="第3章: VQ-VAE と、そのコードの上の PixelCNN 事前分布"),
    Chapter("ch3_vq_transformer", "samples.png", takes_dataset=False,
            reads=(Needs("--run", "ch3_vqvae"),),
            title_ja="第3章（続き）: VQ-VAE のコードの上の Transformer 事前分布（DALL-E 流）"),
    Chapter("ch3_hierarchical_vae", "samples.png",
            title_ja="第3章: 潜在変数が2段の階層型 VAE"),
    Chapter("ch4_dcgan", "samples.png", compares=("ch2_vae",),
            title_ja="第4章: DCGAN、生成器と識別器の二人ゲーム"),
    Chapter("ch4_cgan", "class_grid.png",
            title_ja="第4章: 条件付き GAN（クラスを指定して生成する）"),
    Chapter("ch4_pix2pix", "triplets.png",
            title_ja="第4章: pix2pix、条件付き GAN による画像から画像への変換"),
    Chapter("ch5_ddpm", "samples.png",
            title_ja="第5章: 拡散モデル（DDPM）と時刻を入力にとる U-Net"),
    Chapter("ch5_samplers", "fid_vs_steps.png", reads=(Needs("--run", "ch5_ddpm"),),
            title_ja="第5章（続き）: サンプリングに必要なネットワークの回数を、同じノイズで比べる"),
    Chapter("ch5_conditional_diffusion", "class_grid.png",
            title_ja="第5章: classifier-free guidance による条件付き拡散モデル"),
    Chapter("ch5_latent_diffusion", "class_grid.png",
            compares=("ch5_conditional_diffusion",),
            title_ja="第5章: 潜在拡散モデル、小さな Stable Diffusion"),
    Chapter("ch5_text_to_image", "prompts.png",
            title_ja="第5章: テキストから画像へ、Stable Diffusion の作り方を小さく"
                     "（テキストエンコーダ、クロスアテンション、CLIP）"),
)
NAMES = tuple(c.name for c in CHAPTERS)
BY_NAME = {c.name: c for c in CHAPTERS}
