"""Tests for afterkernel.kernels.invariance: perturbations, cosines, invariances."""

import math

from absl.testing import absltest
from absl.testing import parameterized
import keras
import numpy as np
import tensorflow as tf

from afterkernel import errors
from afterkernel.kernels import features
from afterkernel.kernels import invariance
from afterkernel import models


def _tiny(height=4, width=4):
  """1-based running numbers as a (1, H, W, 1) image: every pixel distinct."""
  return (np.arange(height * width, dtype=np.float32).reshape(
      1, height, width, 1) + 1)


def _flatten(images):
  """The identity kernel phi(x) = x, a transparent feature_fn."""
  return np.asarray(images).reshape(len(images), -1)


def _numpy_cosines(a, b):
  a = np.asarray(a, np.float64)
  b = np.asarray(b, np.float64)
  return np.array([x @ y / np.linalg.norm(x) / np.linalg.norm(y)
                   for x, y in zip(a, b)])


def _bordered_images(num, size=8, border=1, channels=1, seed=0):
  """Random pixels in the interior, a zero frame `border` pixels wide."""
  rng = np.random.default_rng(seed)
  images = np.zeros((num, size, size, channels), np.float32)
  inner = size - 2 * border
  images[:, border:size - border, border:size - border] = rng.uniform(
      0.1, 1.0, (num, inner, inner, channels))
  return images


def _reference_shift(images, right, down):
  """Shift via np.roll, then zero what wrapped around (independent path)."""
  out = np.roll(images, (down, right), axis=(1, 2))
  height, width = images.shape[1:3]
  if down > 0:
    out[:, :min(down, height)] = 0
  elif down < 0:
    out[:, max(height + down, 0):] = 0
  if right > 0:
    out[:, :, :min(right, width)] = 0
  elif right < 0:
    out[:, :, max(width + right, 0):] = 0
  return out


class ShiftTest(parameterized.TestCase):

  def test_exact_on_tiny_image(self):
    x = _tiny()
    np.testing.assert_array_equal(
        invariance.shift(x, 1, 0)[0, :, :, 0],
        [[0, 1, 2, 3], [0, 5, 6, 7], [0, 9, 10, 11], [0, 13, 14, 15]])
    np.testing.assert_array_equal(
        invariance.shift(x, 0, 1)[0, :, :, 0],
        [[0, 0, 0, 0], [1, 2, 3, 4], [5, 6, 7, 8], [9, 10, 11, 12]])
    np.testing.assert_array_equal(
        invariance.shift(x, -1, -2)[0, :, :, 0],
        [[10, 11, 12, 0], [14, 15, 16, 0], [0, 0, 0, 0], [0, 0, 0, 0]])

  def test_right_then_left_loses_last_column_only(self):
    x = _tiny()
    expected = x.copy()
    expected[:, :, -1] = 0
    np.testing.assert_array_equal(
        invariance.shift(invariance.shift(x, 1, 0), -1, 0), expected)

  @parameterized.parameters((0, 0), (2, -3), (-5, 1), (7, 0), (0, -7),
                            (9, 9))
  def test_matches_roll_reference(self, right, down):
    x = np.random.default_rng(1).random((3, 7, 6, 2)).astype(np.float32)
    out = invariance.shift(x, right, down)
    self.assertEqual(out.dtype, np.float32)
    np.testing.assert_array_equal(out, _reference_shift(x, right, down))


class RotateTest(parameterized.TestCase):

  @parameterized.named_parameters(('odd', 5), ('even', 4))
  def test_quarter_turn_is_rot90_counter_clockwise(self, size):
    # np.rot90 turns counter-clockwise as displayed (row 0 on top), about the
    # array centre: this pins down both the sign convention and the centre.
    x = np.random.default_rng(2).random((2, size, size, 3)).astype(
        np.float32)
    np.testing.assert_allclose(
        invariance.rotate(x, math.pi / 2), np.rot90(x, 1, axes=(1, 2)),
        atol=1e-5)
    np.testing.assert_allclose(
        invariance.rotate(x, -math.pi / 2), np.rot90(x, -1, axes=(1, 2)),
        atol=1e-5)
    np.testing.assert_allclose(
        invariance.rotate(x, math.pi), x[:, ::-1, ::-1], atol=1e-5)

  def test_direction_on_hand_example(self):
    # A 3x3 image with one lit pixel right of the centre: a counter-clockwise
    # quarter turn moves it above the centre.
    x = np.zeros((1, 3, 3, 1), np.float32)
    x[0, 1, 2, 0] = 1
    expected = np.zeros((3, 3), np.float32)
    expected[0, 1] = 1
    np.testing.assert_allclose(
        invariance.rotate(x, math.pi / 2)[0, :, :, 0], expected, atol=1e-6)

  def test_zero_angle_is_identity(self):
    x = np.random.default_rng(3).random((2, 6, 5, 1)).astype(np.float32)
    np.testing.assert_allclose(invariance.rotate(x, 0.0), x, atol=1e-6)

  def test_plus_then_minus_is_inverse_in_interior(self):
    # A smooth image so that two bilinear resamplings barely blur it.
    size = 21
    coords = np.arange(size) - (size - 1) / 2
    yy, xx = np.meshgrid(coords, coords, indexing='ij')
    smooth = np.exp(-((xx - 2)**2 + (yy + 1)**2) / 100.0) + 0.05 * xx
    x = smooth[np.newaxis, :, :, np.newaxis].astype(np.float32)
    back = invariance.rotate(invariance.rotate(x, 0.25), -0.25)
    interior = (slice(None), slice(6, 15), slice(6, 15))
    np.testing.assert_allclose(back[interior], x[interior], atol=0.015)
    # ... while a single rotation moves values by much more (about 0.1).
    once = invariance.rotate(x, 0.25)
    self.assertGreater(np.abs(once[interior] - x[interior]).max(), 0.08)

  def test_zero_fill_at_corners(self):
    x = np.ones((1, 9, 9, 1), np.float32)
    out = invariance.rotate(x, math.pi / 4)[0, :, :, 0]
    self.assertEqual(out[0, 0], 0.0)  # the corner comes from outside
    self.assertAlmostEqual(float(out[4, 4]), 1.0, places=6)


def _numpy_bilinear_resize(images, height, width):
  """Separable bilinear resize with half-pixel centres, via np.interp."""

  def resize_axis(array, axis, size):
    old = array.shape[axis]
    source = (np.arange(size) + 0.5) * old / size - 0.5
    return np.apply_along_axis(
        lambda v: np.interp(source, np.arange(old), v), axis, array)

  return resize_axis(resize_axis(images, 1, height), 2, width)


class ZoomTest(parameterized.TestCase):

  @parameterized.parameters(((5, 6, 2), 1), ((8, 8, 1), 1), ((9, 7, 3), 2))
  def test_matches_direct_resize_of_crop(self, shape, crop):
    height, width, channels = shape
    x = np.random.default_rng(4).random((2,) + shape).astype(np.float32)
    out = invariance.zoom(x, crop)
    self.assertEqual(out.shape, x.shape)
    self.assertEqual(out.dtype, np.float32)
    cropped = x[:, crop:height - crop, crop:width - crop, :]
    np.testing.assert_allclose(
        out, tf.image.resize(cropped, (height, width)).numpy(), atol=1e-6)
    np.testing.assert_allclose(
        out, _numpy_bilinear_resize(cropped, height, width), atol=1e-5)
    del channels

  def test_hand_example(self):
    # 4x4 -> centre 2x2 [[a, b], [c, d]] -> 4x4; sampling positions along an
    # axis are -0.25, 0.25, 0.75, 1.25 (clamped), weights 0, .25, .75, 1.
    x = np.zeros((1, 4, 4, 1), np.float32)
    x[0, 1:3, 1:3, 0] = [[0, 4], [8, 12]]
    expected = np.array([[0, 1, 3, 4], [2, 3, 5, 6], [6, 7, 9, 10],
                         [8, 9, 11, 12]], np.float32)
    np.testing.assert_allclose(invariance.zoom(x)[0, :, :, 0], expected,
                               atol=1e-6)

  def test_constant_stays_constant(self):
    x = np.full((2, 7, 5, 1), 0.3, np.float32)
    np.testing.assert_allclose(invariance.zoom(x), x, atol=1e-6)


class SwapTest(absltest.TestCase):

  def test_exact_on_tiny_image(self):
    np.testing.assert_array_equal(
        invariance.swap_quadrants(_tiny())[0, :, :, 0],
        [[11, 12, 3, 4], [15, 16, 7, 8], [9, 10, 1, 2], [13, 14, 5, 6]])

  def test_odd_size_keeps_middle_row_and_column(self):
    np.testing.assert_array_equal(
        invariance.swap_quadrants(_tiny(3, 5))[0, :, :, 0],
        [[14, 15, 3, 4, 5], [6, 7, 8, 9, 10], [11, 12, 13, 1, 2]])
    np.testing.assert_array_equal(
        invariance.swap_quadrants(_tiny(5, 5))[0, :, :, 0],
        [[19, 20, 3, 4, 5], [24, 25, 8, 9, 10], [11, 12, 13, 14, 15],
         [16, 17, 18, 1, 2], [21, 22, 23, 6, 7]])

  def test_twice_is_identity(self):
    x = np.random.default_rng(5).random((3, 7, 6, 2)).astype(np.float32)
    once = invariance.swap_quadrants(x)
    self.assertFalse(np.array_equal(once, x))
    np.testing.assert_array_equal(invariance.swap_quadrants(once), x)


class PerturbedVersionsTest(absltest.TestCase):

  def test_versions(self):
    x = np.random.default_rng(6).random((2, 6, 6, 1)).astype(np.float32)
    translation = invariance.perturbed_versions(x, 'translation')
    self.assertLen(translation, 2)
    np.testing.assert_array_equal(translation[0], invariance.shift(x, 1, 0))
    np.testing.assert_array_equal(translation[1], invariance.shift(x, 0, 1))
    rotation = invariance.perturbed_versions(x, 'rotation', 0.3)
    self.assertLen(rotation, 2)
    np.testing.assert_allclose(rotation[0], invariance.rotate(x, 0.3))
    np.testing.assert_allclose(rotation[1], invariance.rotate(x, -0.3))
    (zoomed,) = invariance.perturbed_versions(x, 'zoom')
    np.testing.assert_allclose(zoomed, invariance.zoom(x, 1))
    (swapped,) = invariance.perturbed_versions(x, 'swap')
    np.testing.assert_array_equal(swapped, invariance.swap_quadrants(x))


class CosineSimilaritiesTest(absltest.TestCase):

  def test_matches_numpy_formula(self):
    rng = np.random.default_rng(7)
    a = rng.normal(size=(6, 50)).astype(np.float32)
    b = (a + 0.5 * rng.normal(size=(6, 50))).astype(np.float32)
    b[0] = -3 * a[0]
    cosines = invariance.cosine_similarities(a, b)
    self.assertEqual(cosines.dtype, np.float64)
    np.testing.assert_allclose(cosines, _numpy_cosines(a, b), rtol=1e-12)
    self.assertAlmostEqual(cosines[0], -1.0, places=12)
    np.testing.assert_allclose(invariance.cosine_similarities(a, 2 * a), 1.0,
                               rtol=1e-12)

  def test_zero_rows_raise(self):
    a = np.ones((4, 3), np.float32)
    b = np.ones((4, 3), np.float32)
    a[1] = 0
    b[3] = 0
    with self.assertRaisesRegex(errors.AfterKernelError, '2 of 4 rows'):
      invariance.cosine_similarities(a, b)

  def test_bad_inputs_raise(self):
    with self.assertRaisesRegex(errors.AfterKernelError, 'same shape'):
      invariance.cosine_similarities(np.ones((2, 3)), np.ones((3, 3)))
    with self.assertRaisesRegex(errors.AfterKernelError, 'NaN'):
      invariance.cosine_similarities(np.array([[1.0, np.nan]]),
                                     np.ones((1, 2)))


class InvarianceTest(parameterized.TestCase):
  """The bookkeeping, with the transparent kernel phi(x) = x."""

  def setUp(self):
    super().setUp()
    self.images = np.random.default_rng(8).random((7, 6, 6, 2)).astype(
        np.float32)

  @parameterized.parameters(*invariance.PERTURBATIONS)
  def test_matches_direct_computation(self, kind):
    x = self.images
    versions = {
        'translation': [_reference_shift(x, 1, 0), _reference_shift(x, 0, 1)],
        'rotation': [invariance.rotate(x, 0.4), invariance.rotate(x, -0.4)],
        'zoom': [tf.image.resize(x[:, 1:-1, 1:-1], (6, 6)).numpy()],
        'swap': [invariance.swap_quadrants(x)],
    }[kind]
    expected = np.mean([np.mean(_numpy_cosines(_flatten(x), _flatten(v)))
                        for v in versions])
    got = invariance.invariance(_flatten, x, kind, rotation_angle=0.4)
    self.assertIsInstance(got, float)
    self.assertAlmostEqual(got, expected, places=6)
    self.assertLess(got, 0.999)  # random pixels: no kind is invariant

  def test_rotation_angle_is_used(self):
    x = self.images
    small = invariance.invariance(_flatten, x, 'rotation', rotation_angle=0.05)
    large = invariance.invariance(_flatten, x, 'rotation', rotation_angle=0.5)
    self.assertGreater(small, large)
    self.assertAlmostEqual(
        invariance.invariance(_flatten, x, 'rotation', rotation_angle=0.0),
        1.0, places=6)

  def test_invariances_on_prefixes_share_base_features(self):
    calls = []

    def recording(images):
      calls.append(len(images))
      return _flatten(images)

    counts = {'translation': 5, 'rotation': 0, 'zoom': 4, 'swap': 3}
    got = invariance.invariances(recording, self.images, counts,
                                 rotation_angle=0.3, chunk_size=None)
    self.assertEqual(list(got), ['translation', 'zoom', 'swap'])
    # phi of the 5 unperturbed images once, then 2 x 5 shifted, 4 zoomed and
    # 3 swapped images: nothing unperturbed is recomputed.
    self.assertEqual(calls, [5, 5, 5, 4, 3])
    for kind, count in counts.items():
      if count:
        self.assertAlmostEqual(
            got[kind],
            invariance.invariance(_flatten, self.images[:count], kind),
            places=12)

  @parameterized.parameters(1, 2, 3, 100)
  def test_chunking_does_not_change_results(self, chunk_size):
    counts = {'translation': 7, 'rotation': 5, 'zoom': 2, 'swap': 6}
    whole = invariance.invariances(_flatten, self.images, counts,
                                   chunk_size=None)
    chunked = invariance.invariances(_flatten, self.images, counts,
                                     chunk_size=chunk_size)
    self.assertEqual(list(chunked), list(whole))
    for kind in whole:
      self.assertAlmostEqual(chunked[kind], whole[kind], places=12)

  def test_all_zero_counts_give_empty_dict(self):
    self.assertEqual(
        invariance.invariances(_flatten, self.images, {'zoom': 0}), {})


class NetworkInvarianceTest(absltest.TestCase):
  """Gradient-feature kernels: an exactly invariant net and a VGG-like one."""

  def setUp(self):
    super().setUp()
    self.images = _bordered_images(12, size=8, border=1)
    self.counts = {'translation': 12, 'swap': 12}

  def test_sum_net_is_invariant_to_translation_and_swap(self):
    keras.utils.set_random_seed(0)
    model = models.build_sum_net((8, 8, 1))
    got = invariance.invariances(
        lambda x: features.gradient_features(model, x), self.images,
        self.counts)
    self.assertGreater(got['translation'], 1 - 1e-5)
    self.assertGreater(got['swap'], 1 - 1e-5)

  def test_vgg_is_not_invariant(self):
    keras.utils.set_random_seed(0)
    model = models.build_model('vgg', (8, 8, 1))
    got = invariance.invariances(
        lambda x: features.gradient_features(model, x), self.images,
        self.counts)
    self.assertLess(got['translation'], 0.999)
    self.assertLess(got['swap'], 0.999)
    self.assertGreater(got['translation'], 0.0)


class ErrorTest(absltest.TestCase):

  def setUp(self):
    super().setUp()
    self.images = np.random.default_rng(9).random((4, 6, 6, 1)).astype(
        np.float32)

  def test_unknown_kind(self):
    with self.assertRaisesRegex(errors.AfterKernelError,
                                "unknown perturbation 'shear'"):
      invariance.invariance(_flatten, self.images, 'shear')
    with self.assertRaisesRegex(errors.AfterKernelError, 'unknown'):
      invariance.invariances(_flatten, self.images, {'shear': 2})
    with self.assertRaisesRegex(errors.AfterKernelError, 'unknown'):
      invariance.perturbed_versions(self.images, 'shear')

  def test_images_not_nhwc(self):
    for function in (lambda x: invariance.shift(x, 1, 0),
                     lambda x: invariance.rotate(x, 0.1),
                     invariance.zoom, invariance.swap_quadrants,
                     lambda x: invariance.invariance(_flatten, x, 'swap')):
      with self.assertRaisesRegex(errors.AfterKernelError, '4-D NHWC'):
        function(self.images[..., 0])

  def test_bad_counts(self):
    with self.assertRaisesRegex(errors.AfterKernelError,
                                r"'zoom' must be in \[0, 4\].*got -1"):
      invariance.invariances(_flatten, self.images, {'zoom': -1})
    with self.assertRaisesRegex(errors.AfterKernelError,
                                r"'swap' must be in \[0, 4\].*got 5"):
      invariance.invariances(_flatten, self.images, {'swap': 5})
    with self.assertRaisesRegex(errors.AfterKernelError, 'integer'):
      invariance.invariances(_flatten, self.images, {'swap': 2.0})

  def test_non_finite_angle(self):
    for angle in (float('nan'), float('inf')):
      with self.assertRaisesRegex(errors.AfterKernelError, 'finite'):
        invariance.invariances(_flatten, self.images, {'rotation': 2},
                               rotation_angle=angle)
      with self.assertRaisesRegex(errors.AfterKernelError, 'finite'):
        invariance.rotate(self.images, angle)

  def test_image_too_small_to_zoom(self):
    tiny = np.ones((3, 2, 5, 1), np.float32)
    with self.assertRaisesRegex(errors.AfterKernelError, 'too small'):
      invariance.zoom(tiny)
    with self.assertRaisesRegex(errors.AfterKernelError, 'too small'):
      invariance.zoom(self.images, crop=3)
    with self.assertRaisesRegex(errors.AfterKernelError, 'too small'):
      invariance.invariances(_flatten, tiny, {'zoom': 1})
    # Without zoom, small images are fine.
    self.assertIn('translation',
                  invariance.invariances(_flatten, tiny, {'translation': 3}))

  def test_empty_images_for_single_invariance(self):
    with self.assertRaisesRegex(errors.AfterKernelError, 'at least one'):
      invariance.invariance(_flatten, self.images[:0], 'swap')

  def test_feature_fn_with_wrong_shape(self):
    with self.assertRaisesRegex(errors.AfterKernelError, 'feature_fn'):
      invariance.invariance(lambda x: np.ones((1, 3)), self.images, 'swap')

  def test_zero_features_raise(self):
    with self.assertRaisesRegex(errors.AfterKernelError, 'all-zero'):
      invariance.invariance(_flatten, np.zeros((2, 4, 4, 1), np.float32),
                            'swap')


if __name__ == '__main__':
  absltest.main()
