"""Gram matrices of feature maps, and numbers that describe a kernel.

A kernel here is K(u, v) = phi(u).phi(v) for a feature map phi (gradient
features for the FNTK / after kernel, penultimate activations for the
conjugate projection). This package's names for 0.1.0 callers:

  * Gram matrices, formed in `kernels.grams` (re-exported here), and the
    feature scale s = mean_i ||phi(x_i)|| used to rescale features to
    average norm 1 before the max-margin solver;
  * kernel alignment and the two effective ranks, re-exported from
    `kernels.metrics`, where every kernel metric lives.
"""

# Every Gram is formed in `kernels.grams`; its names stay importable here.
from afterkernel.kernels.grams import DEFAULT_BLOCK_SIZE
from afterkernel.kernels.grams import DEFAULT_STREAM_BLOCK
from afterkernel.kernels.grams import feature_scale
from afterkernel.kernels.grams import gram
from afterkernel.kernels.grams import gram_from_blocks
from afterkernel.kernels.grams import streamed_gram
from afterkernel.kernels.grams import structured_gram
from afterkernel.kernels.grams import train_and_cross_gram
# Kernel metrics live in kernels.metrics; their 0.1.0 names here stay.
from afterkernel.kernels.metrics import entropy_effective_rank
from afterkernel.kernels.metrics import kernel_alignment
from afterkernel.kernels.metrics import trace_effective_rank
