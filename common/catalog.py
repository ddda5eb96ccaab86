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


CHAPTERS = (
    Chapter("ch1_classifiers", "predictions_cnn.png"),
    Chapter("ch1_edge_filters", "edges_strokes.png"),
    Chapter("ch2_dense_autoencoder", "reconstructions.png"),
    Chapter("ch2_vae", "latent_scatter.png"),
    Chapter("classical_normal", "central_limit.png", takes_dataset=False),
    Chapter("classical_gmm_em", "gmm_vae_samples.png", takes_dataset=False,
            reads=(Needs("--latents", "ch2_vae", "latents.npz", optional=True),)),
    Chapter("ch3_vae", "traversals_conv.png"),
    Chapter("ch3_cvae", "same_z_every_class.png"),
    Chapter("ch3_vqvae", "samples.png", compares=("ch2_vae",)),
    Chapter("ch3_vq_transformer", "samples.png", takes_dataset=False,
            reads=(Needs("--run", "ch3_vqvae"),)),
    Chapter("ch3_hierarchical_vae", "samples.png"),
    Chapter("ch4_dcgan", "samples.png", compares=("ch2_vae",)),
    Chapter("ch4_cgan", "class_grid.png"),
    Chapter("ch4_pix2pix", "triplets.png"),
    Chapter("ch5_ddpm", "samples.png"),
    Chapter("ch5_samplers", "fid_vs_steps.png", reads=(Needs("--run", "ch5_ddpm"),)),
    Chapter("ch5_conditional_diffusion", "class_grid.png"),
    Chapter("ch5_latent_diffusion", "class_grid.png",
            compares=("ch5_conditional_diffusion",)),
)
NAMES = tuple(c.name for c in CHAPTERS)
BY_NAME = {c.name: c for c in CHAPTERS}
