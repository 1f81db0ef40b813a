"""Packaging for afterkernel: `pip install -e '.[test]'` sets up a checkout."""

import setuptools

setuptools.setup(
    name='afterkernel',
    version='0.1.0',
    description=(
        'Gradient-feature kernels of Keras networks: FNTK vs after kernel, '
        'hard-margin SVMs on Gram matrices, invariance and alignment.'),
    long_description=open('README.md', encoding='utf-8').read(),
    long_description_content_type='text/markdown',
    packages=setuptools.find_packages(include=['afterkernel', 'afterkernel.*',
                                               'binaries', 'binaries.*']),
    python_requires='>=3.10',
    install_requires=[
        # TF 2.16+ ships Keras 3 as `keras`; the code uses keras 3 APIs only.
        'tensorflow>=2.16',
        'keras>=3.0',
        'tensorflow-datasets>=4.9',
        # tfds' file access (etils.epath) imports it but does not require it.
        'importlib_resources',
        'numpy>=1.24',
        'scipy>=1.10',
        # The exact max-margin solver's coordinate steps (BENCHMARKS.md).
        'numba>=0.59',
        'absl-py>=1.4',
        'matplotlib>=3.7',
        # The embedded offline dataset (UCI handwritten digits) ships with it.
        'scikit-learn>=1.3',
    ],
    extras_require={
        # Keras' TensorBoard callback needs it; the test extra includes it
        # so that CI checks the callback's metrics reach its event files.
        'tensorboard': ['tensorboard>=2.16'],
        # --executor=ray (studies/ray_executor.py): Ray core tasks. Pinned:
        # the version tested (tests/ray_executor_test.py) on python 3.11.
        'ray': ['ray==2.40.0'],
        # The test extra includes it so that CI (.ci/run installs '.[test]',
        # README's command) runs the Ray tests on a local 2-CPU instance.
        'test': ['pytest>=7', 'tensorboard>=2.16', 'ray==2.40.0'],
        # The peer libraries that benchmarks/peers.py times beside ours
        # (`pip install -e '.[peers]'`; not for CI). neural-tangents 0.6.5
        # needs jax <= 0.4.30 (peers.import_neural_tangents patches two
        # aliases jax 0.4.26 dropped; older jax cannot run on NumPy 2), and
        # tf2jax, which it imports, 0.3.6 for that jax.
        'peers': ['torch==2.13.0', 'neural-tangents==0.6.5', 'jax==0.4.30',
                  'jaxlib==0.4.30', 'tf2jax==0.3.6'],
    },
)
