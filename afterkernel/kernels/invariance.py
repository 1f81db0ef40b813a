"""Invariance of a kernel to image perturbations (translation, rotation, ...).

For a kernel K(u, v) = phi(u).phi(v) and a perturbation T, the invariance is

    inv_T(K) = mean over test images x of cos(phi(x), phi(T(x))),

the cosine similarity of an image and its perturbed copy in feature space
(Long 2021, "Properties of the after kernel", Section on invariance). A value
of 1 means the kernel cannot tell x from T(x). Applied to gradient features
at initialization (the NTK) and after training (the after kernel), it shows
whether training makes the kernel more invariant.

Perturbations (`PERTURBATIONS`); when a kind has two versions, the invariance
is the mean of the two mean cosines:
  * 'translation': a 1-pixel shift right and a 1-pixel shift down (`shift`),
    zero fill.
  * 'rotation': rotations by +angle and -angle about the image centre
    (`rotate`), bilinear, zero fill; the paper uses 0.25 radians.
  * 'zoom': crop a 1-pixel ring and resize back to H x W (`zoom`).
  * 'swap' ("locality"): exchange the upper-left and lower-right quadrants
    (`swap_quadrants`).

All image functions take and return float32 NHWC arrays and are pure numpy /
TensorFlow ops (no tensorflow-addons).
"""

import math
from typing import Callable, Mapping, Optional

import numpy as np
import tensorflow as tf

from afterkernel import errors

PERTURBATIONS = ('translation', 'rotation', 'zoom', 'swap')
# The paper's rotation: about 14 degrees, small enough to keep digits legible.
DEFAULT_ROTATION_ANGLE = 0.25
# Pixels cropped from each side by the zoom perturbation, as in the paper.
DEFAULT_ZOOM_CROP = 1
# Images whose features are held at once by `invariances`: the unperturbed and
# one perturbed block of chunk x P float32 each (P = number of parameters), so
# memory stays bounded for large nets and large counts.
DEFAULT_CHUNK_SIZE = 256

FeatureFn = Callable[[np.ndarray], np.ndarray]


def _as_images(images, name: str = 'images') -> np.ndarray:
  """Converts to float32 and checks the NHWC rank."""
  images = np.asarray(images, dtype=np.float32)
  errors.require(images.ndim == 4,
                 f'{name} must be a 4-D NHWC array (n, height, width, '
                 f'channels), got shape {images.shape}')
  return images


def _check_int(value, name: str) -> None:
  errors.require(
      isinstance(value, (int, np.integer)) and not isinstance(value, bool),
      f'{name} must be an integer, got {value!r}')


def shift(images, right: int, down: int) -> np.ndarray:
  """Translates images by whole pixels with zero fill.

  out[:, i, j, :] = images[:, i - down, j - right, :] where that index is
  inside the image, else 0: pixels pushed out of the frame are lost and the
  uncovered rows/columns are 0.

  Args:
    images: (n, H, W, C) images.
    right: pixels to move right (negative = left).
    down: pixels to move down (negative = up).

  Returns:
    (n, H, W, C) float32 shifted images (all zero if a shift exceeds the size).

  Raises:
    AfterKernelError: if images are not 4-D or the shifts are not integers.
  """
  images = _as_images(images)
  _check_int(right, 'right')
  _check_int(down, 'down')
  right, down = int(right), int(down)
  height, width = images.shape[1:3]
  out = np.zeros_like(images)
  if abs(down) >= height or abs(right) >= width:
    return out
  # Destination rows/columns receive the source ones `down`/`right` earlier.
  rows_dst = slice(max(down, 0), height + min(down, 0))
  rows_src = slice(max(-down, 0), height + min(-down, 0))
  cols_dst = slice(max(right, 0), width + min(right, 0))
  cols_src = slice(max(-right, 0), width + min(-right, 0))
  out[:, rows_dst, cols_dst, :] = images[:, rows_src, cols_src, :]
  return out


def rotation_transform(angle: float, height: int, width: int) -> np.ndarray:
  """The 8-parameter projective transform rotating about the image centre.

  `tf.raw_ops.ImageProjectiveTransformV3` maps each OUTPUT pixel (x, y)
  (x = column, y = row, integer = pixel centre) to the INPUT point
  (a0 x + a1 y + a2, b0 x + b1 y + b2) that it samples. With y pointing down,
  an image turned counter-clockwise as displayed by `angle` samples

    x_in = cos(a) (x - cx) - sin(a) (y - cy) + cx,
    y_in = sin(a) (x - cx) + cos(a) (y - cy) + cy,

  with centre (cx, cy) = ((W - 1) / 2, (H - 1) / 2). This is the convention of
  `np.rot90` (angle = pi/2 gives np.rot90 over the H, W axes) and of the old
  `tfa.image.rotate`.

  Args:
    angle: radians, positive = counter-clockwise as displayed (row 0 on top).
    height: image height H.
    width: image width W.

  Returns:
    float32 array of shape (8,): [a0, a1, a2, b0, b1, b2, 0, 0].
  """
  cos, sin = math.cos(angle), math.sin(angle)
  cx, cy = (width - 1) / 2.0, (height - 1) / 2.0
  return np.array([
      cos, -sin, cx - cos * cx + sin * cy,
      sin, cos, cy - sin * cx - cos * cy,
      0.0, 0.0
  ], dtype=np.float32)


def rotate(images, angle: float) -> np.ndarray:
  """Rotates images about their centre, bilinear, zero fill outside.

  Args:
    images: (n, H, W, C) images.
    angle: radians; positive = counter-clockwise as displayed with row 0 at
      the top (so angle = pi/2 on a square image equals
      `np.rot90(images, axes=(1, 2))`). See `rotation_transform`.

  Returns:
    (n, H, W, C) float32 rotated images; points that come from outside the
    input are 0 (bilinear weights with out-of-frame neighbours count those
    neighbours as 0).

  Raises:
    AfterKernelError: if images are not 4-D or the angle is not finite.
  """
  images = _as_images(images)
  errors.require(_is_finite_number(angle),
                 f'rotation angle must be a finite number of radians, got '
                 f'{angle!r}')
  height, width = images.shape[1:3]
  if len(images) == 0:
    return images.copy()
  transform = rotation_transform(float(angle), height, width)
  rotated = tf.raw_ops.ImageProjectiveTransformV3(
      images=tf.constant(images),
      transforms=tf.constant(transform[np.newaxis]),
      output_shape=tf.constant([height, width], tf.int32),
      fill_value=tf.constant(0.0, tf.float32),
      interpolation='BILINEAR',
      fill_mode='CONSTANT')
  return rotated.numpy()


def zoom(images, crop: int = DEFAULT_ZOOM_CROP) -> np.ndarray:
  """Zooms in: crops `crop` pixels from every side, resizes back to H x W.

  out = tf.image.resize(images[:, crop:H-crop, crop:W-crop, :], (H, W)) with
  the resize defaults (bilinear, antialias=False, half-pixel centres).

  Args:
    images: (n, H, W, C) images.
    crop: pixels removed from each of the four sides (>= 1).

  Returns:
    (n, H, W, C) float32 zoomed images.

  Raises:
    AfterKernelError: if images are not 4-D, crop is not a positive integer,
      or the image is too small to crop (H or W <= 2 * crop).
  """
  images = _as_images(images)
  _check_int(crop, 'crop')
  errors.require(crop >= 1, f'zoom crop must be >= 1 pixel, got {crop}')
  height, width = images.shape[1:3]
  errors.require(
      min(height, width) > 2 * crop,
      f'a {height}x{width} image is too small to zoom by cropping {crop} '
      f'pixel(s) per side; need height and width > {2 * crop}')
  if len(images) == 0:
    return images.copy()
  cropped = images[:, crop:height - crop, crop:width - crop, :]
  return tf.image.resize(cropped, (height, width)).numpy().astype(np.float32)


def swap_quadrants(images) -> np.ndarray:
  """Exchanges the upper-left and lower-right quadrants ("locality" test).

  With h = H // 2 and w = W // 2, the block images[:, :h, :w] and the block
  images[:, H-h:, W-w:] trade places; the other two quadrants (and, for odd
  sizes, the middle row / column) stay. The map is its own inverse.

  Args:
    images: (n, H, W, C) images.

  Returns:
    (n, H, W, C) float32 images with the two quadrants swapped.

  Raises:
    AfterKernelError: if images are not 4-D.
  """
  images = _as_images(images)
  height, width = images.shape[1:3]
  h, w = height // 2, width // 2
  out = images.copy()
  out[:, :h, :w] = images[:, height - h:, width - w:]
  out[:, height - h:, width - w:] = images[:, :h, :w]
  return out


def perturbed_versions(images, kind: str,
                       rotation_angle: float = DEFAULT_ROTATION_ANGLE
                       ) -> list[np.ndarray]:
  """The perturbed copies of `images` whose invariances are averaged for `kind`.

  Args:
    images: (n, H, W, C) images.
    kind: one of `PERTURBATIONS`.
    rotation_angle: radians, used by 'rotation' only.

  Returns:
    'translation': [shift right 1, shift down 1]; 'rotation':
    [rotate +angle, rotate -angle]; 'zoom': [zoom crop 1]; 'swap':
    [swap quadrants]. Each (n, H, W, C) float32.

  Raises:
    AfterKernelError: on an unknown kind or bad images / angle.
  """
  _check_kind(kind)
  if kind == 'translation':
    return [shift(images, 1, 0), shift(images, 0, 1)]
  if kind == 'rotation':
    return [rotate(images, rotation_angle), rotate(images, -rotation_angle)]
  if kind == 'zoom':
    return [zoom(images)]
  return [swap_quadrants(images)]


def cosine_similarities(a, b) -> np.ndarray:
  """Row-wise cosine similarity cos(a_i, b_i) = a_i.b_i / (|a_i| |b_i|).

  Dot products and norms are accumulated in float64 so that values near 1
  (the interesting regime of invariance) are not swamped by rounding of long
  float32 sums.

  Args:
    a: (n, P) features.
    b: (n, P) features.

  Returns:
    (n,) float64 cosines, each in [-1, 1].

  Raises:
    AfterKernelError: on mismatched shapes, non-finite values, or rows with a
      zero norm (the cosine is then undefined).
  """
  a = np.asarray(a, dtype=np.float64)
  b = np.asarray(b, dtype=np.float64)
  errors.require(a.ndim == 2 and a.shape == b.shape,
                 'cosine similarities need two (n, P) arrays of the same '
                 f'shape, got {a.shape} and {b.shape}')
  errors.require(np.all(np.isfinite(a)) and np.all(np.isfinite(b)),
                 'features contain NaN or inf; cannot compute cosines (check '
                 'the model weights / training for divergence)')
  norm_a = np.sqrt(np.einsum('ij,ij->i', a, a))
  norm_b = np.sqrt(np.einsum('ij,ij->i', b, b))
  zero_rows = int(np.sum((norm_a == 0) | (norm_b == 0)))
  errors.require(zero_rows == 0,
                 f'{zero_rows} of {len(a)} rows have an all-zero feature '
                 'vector, so their cosine is undefined; check the images and '
                 'the network (e.g. dead ReLUs on blank images)')
  cosines = np.einsum('ij,ij->i', a, b) / (norm_a * norm_b)
  return np.clip(cosines, -1.0, 1.0)


def invariance(feature_fn: FeatureFn,
               images,
               kind: str,
               rotation_angle: float = DEFAULT_ROTATION_ANGLE,
               chunk_size: Optional[int] = DEFAULT_CHUNK_SIZE) -> float:
  """Invariance of the kernel phi(u).phi(v) to one kind of perturbation.

  inv = mean over versions T of [mean over x in images of
  cos(phi(x), phi(T(x)))], with the versions of `perturbed_versions`.

  Args:
    feature_fn: maps (m, H, W, C) float32 images to (m, P) features, one row
      per image, each row depending only on its own image (e.g.
      `lambda x: features.gradient_features(model, x)`).
    images: (n, H, W, C) images, n >= 1.
    kind: one of `PERTURBATIONS`.
    rotation_angle: radians, for 'rotation'.
    chunk_size: images whose features are computed per `feature_fn` call
      (bounds memory); None = all at once.

  Returns:
    The invariance, a float in [-1, 1].

  Raises:
    AfterKernelError: on bad kind, images, angle, or zero feature vectors.
  """
  _check_kind(kind)
  images = _as_images(images)
  errors.require(len(images) > 0,
                 'invariance needs at least one image, got 0')
  return invariances(feature_fn, images, {kind: len(images)},
                     rotation_angle=rotation_angle,
                     chunk_size=chunk_size)[kind]


def invariances(feature_fn: FeatureFn,
                images,
                counts: Mapping[str, int],
                rotation_angle: float = DEFAULT_ROTATION_ANGLE,
                chunk_size: Optional[int] = DEFAULT_CHUNK_SIZE
                ) -> dict[str, float]:
  """Invariances to several perturbations, each on a prefix of `images`.

  Kind k is measured on images[:counts[k]] (as the paper did: e.g. the first
  1000 test images for translation). Since every prefix is a prefix of
  images[:max count], the unperturbed features phi(x) are computed once per
  image and shared by all kinds; the perturbed features are computed per kind
  and version. Work proceeds in chunks of `chunk_size` images so at most two
  (chunk, P) feature blocks are alive at once.

  Args:
    feature_fn: maps (m, H, W, C) float32 images to (m, P) features, row i
      depending only on image i (true of `features.gradient_features`).
    images: (n, H, W, C) images.
    counts: kind -> number of leading images to use; kinds must be in
      `PERTURBATIONS`; kinds with count 0 (or absent) are skipped.
    rotation_angle: radians, for 'rotation' (+angle and -angle).
    chunk_size: images per `feature_fn` call; None = all at once.

  Returns:
    kind -> invariance (mean over versions of the mean cosine), for every kind
    with a positive count, in `PERTURBATIONS` order.

  Raises:
    AfterKernelError: on an unknown kind, images that are not 4-D, a count
      that is negative or larger than the number of images, a non-finite
      rotation angle, images too small to zoom, a bad chunk size, a feature_fn
      returning the wrong shape, or zero feature vectors.
  """
  images = _as_images(images)
  errors.require(isinstance(counts, Mapping),
                 f'counts must be a dict kind -> count, got {counts!r}')
  for kind, count in counts.items():
    _check_kind(kind)
    _check_int(count, f'count for {kind!r}')
    errors.require(0 <= count <= len(images),
                   f'count for {kind!r} must be in [0, {len(images)}] (the '
                   f'number of images), got {count}')
  errors.require(_is_finite_number(rotation_angle),
                 'rotation_angle must be a finite number of radians, got '
                 f'{rotation_angle!r}')
  if chunk_size is not None:
    _check_int(chunk_size, 'chunk_size')
    errors.require_positive(chunk_size, 'chunk_size')
  active = {k: int(counts[k]) for k in PERTURBATIONS if counts.get(k, 0) > 0}
  if 'zoom' in active:
    height, width = images.shape[1:3]
    errors.require(
        min(height, width) > 2 * DEFAULT_ZOOM_CROP,
        f'a {height}x{width} image is too small for the zoom perturbation; '
        f'need height and width > {2 * DEFAULT_ZOOM_CROP} or a zoom count of '
        '0')
  if not active:
    return {}
  total = max(active.values())
  step = total if chunk_size is None else int(chunk_size)
  # cosine_sums[kind][v] = sum of cos(phi(x), phi(T_v(x))) over images so far.
  cosine_sums = {k: None for k in active}
  for start in range(0, total, step):
    stop = min(start + step, total)
    base = _features(feature_fn, images[start:stop])
    for kind, count in active.items():
      if count <= start:
        continue
      end = min(stop, count)
      versions = perturbed_versions(images[start:end], kind, rotation_angle)
      sums = np.array([
          np.sum(cosine_similarities(base[:end - start],
                                     _features(feature_fn, version)))
          for version in versions
      ])
      cosine_sums[kind] = sums if cosine_sums[kind] is None else (
          cosine_sums[kind] + sums)
  return {kind: float(np.mean(cosine_sums[kind] / count))
          for kind, count in active.items()}


def _features(feature_fn: FeatureFn, images: np.ndarray) -> np.ndarray:
  """Calls feature_fn and checks it returns one feature row per image."""
  result = np.asarray(feature_fn(images))
  errors.require(
      result.ndim == 2 and result.shape[0] == len(images),
      f'feature_fn must return (m, P) features for m={len(images)} images, '
      f'got shape {result.shape}')
  return result


def _check_kind(kind) -> None:
  errors.require_choice(kind, PERTURBATIONS, 'perturbation')


def _is_finite_number(value) -> bool:
  return (isinstance(value, (int, float, np.integer, np.floating))
          and not isinstance(value, bool) and math.isfinite(value))
