"""Hard-margin linear SVM (no bias) on kernel features, with a certificate.

A kernel is scored by the normalized margin of the maximum-margin linear
classifier (no bias) on its features phi(x_i), rescaled by
s = mean_i ||phi(x_i)|| = mean_i sqrt(K_ii) to mean norm 1:

  gamma* = max_{||w|| = 1} min_i y_i <w, phi(x_i) / s>
         = min_{p in simplex} ||Z^T p||          (separable data),

with z_i = y_i phi(x_i) / s the rows of Z. Every solver returns a
`MarginResult` whose `dual_coef` defines f(x) = sum_i dual_coef_i K(x, x_i)
and whose bounds margin <= gamma* <= margin_upper_bound are the
certificate of `certificate.py`; `certificate.certificate(gram, labels,
dual_coef)` recomputes them from the coefficients alone.

Solvers (`SOLVERS`; `max_margin_from_gram(..., solver=NAME)`):
  'exact' (default, exact.py): greedy dual coordinate descent on
    min_{a >= 0} 1/2 a^T Q a - 1^T a (SMO-like, one Gram row per step,
    compiled with numba), to a certified relative gap (default 1e-4);
    stops early with stop_reason 'not_separable' when the data are not
    separable. When it has not stopped after max(200 n, 100,000) steps
    (barely separable or low-rank Grams), it switches to 'interior_point'
    (result solver 'exact+interior_point'). Pick it unless you need one of
    the others.
  'interior_point' (interior.py): Mehrotra's primal-dual method on
    min_{p in simplex} p^T Q p, 12-20 Newton steps of one dense Cholesky
    each whatever the conditioning (two float64 n x n matrices in memory);
    on features with P < n (`max_margin_from_features`) Woodbury on P x P
    systems instead.
  'working_set', 'dual', 'stochastic' (jst.py): Algorithm 1 of Ji, Srebro &
    Telgarsky (ICML 2021) and its variants, the paper's reference algorithm;
    same certificate, slower tail at n ~ 10^4. 'jst1' and 'jst2' are the
    original script's names of 'dual' and 'stochastic'.
  'primal' (jst.py; `max_margin_from_features` only): Algorithm 1 on
    explicit features.
  'sklearn' (libsvm.py): libsvm's SVC(kernel='precomputed') with a bias and
    a large C, the original script's baseline; no upper bound.

stability.py turns a certificate into bounds on the test error of the exact
max-margin classifier (`certified_error_bounds`): test points whose cosine
with w is below sqrt(1 - (margin / upper)^2) may be classified either way;
`tighten` re-solves at smaller gaps (`warm_start=`, 'exact' and
'interior_point') until that interval is a single value, as the kernel
probe does by default.

Any solver also stops on `max_iterations` or, if given, `max_seconds` (the
original script's time limit); an unconverged result has converged=False,
its stop_reason, and raises an `UnconvergedWarning`. The Gram is checked
first (checks.py): asymmetric or clearly indefinite matrices are refused
with an `AfterKernelError`. `device=` ('auto', 'cpu', 'gpu' or a TensorFlow
device name, device.py) says where the full Gram-vector products run.
"""

from afterkernel.margin.api import decision_function
from afterkernel.margin.api import default_max_iterations
from afterkernel.margin.api import DEFAULT_SOLVER
from afterkernel.margin.api import GRAM_SOLVERS
from afterkernel.margin.api import INTERIOR_SOLVERS
from afterkernel.margin.api import max_margin_from_features
from afterkernel.margin.api import max_margin_from_gram
from afterkernel.margin.api import predict_labels
from afterkernel.margin.api import SOLVER_ALIASES
from afterkernel.margin.api import SOLVERS
from afterkernel.margin.api import SWITCHED_SOLVER
from afterkernel.margin.api import test_error
from afterkernel.margin.api import UnconvergedWarning
from afterkernel.margin.api import WARM_START_SOLVERS
from afterkernel.margin.certificate import certificate
from afterkernel.margin.certificate import DEFAULT_TOLERANCE
from afterkernel.margin.certificate import LOG_EVERY_SECONDS
from afterkernel.margin.certificate import MarginResult
from afterkernel.margin.certificate import NOT_SEPARABLE_MARGIN
from afterkernel.margin.certificate import STOP_LIBSVM
from afterkernel.margin.certificate import STOP_MAX_ITERATIONS
from afterkernel.margin.certificate import STOP_MAX_SECONDS
from afterkernel.margin.certificate import STOP_NOT_SEPARABLE
from afterkernel.margin.certificate import STOP_TOLERANCE
from afterkernel.margin.exact import STOP_STALLED
from afterkernel.margin.interior import SOLVER as INTERIOR_POINT
# The JST solvers' constants, under their 0.1.0 names.
from afterkernel.margin.jst import DEFAULT_CHECK_EVERY
from afterkernel.margin.jst import DEFAULT_MAX_ITERATIONS
from afterkernel.margin.jst import DEFAULT_STOCHASTIC_MAX_ITERATIONS
from afterkernel.margin.jst import DENSE_FRACTION
from afterkernel.margin.jst import RESYNC_EVERY
from afterkernel.margin.jst import SUPPORT_CHUNK
from afterkernel.margin.jst import SUPPORT_CUTOFF
from afterkernel.margin.jst import WORKING_SET_COARSE_TOLERANCE
from afterkernel.margin.jst import WORKING_SET_MAX_ROUNDS
