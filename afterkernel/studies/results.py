"""0.1.0 module path of the result files; use `studies.store`/`summary`.

Kept so that code written against 0.1.0 (and the scaling studies until they
move onto `studies.runner`) keeps working; every name here is the one in
`store` or `summary` (see CHANGELOG.md).
"""

# pylint: disable=unused-import
from afterkernel.studies.store import append_run
from afterkernel.studies.store import atomic_write_text
from afterkernel.studies.store import claim_output_dir
from afterkernel.studies.store import config_fingerprint
from afterkernel.studies.store import CONFIG_FILE
from afterkernel.studies.store import read_runs
from afterkernel.studies.store import RUNS_FILE
from afterkernel.studies.store import to_json
from afterkernel.studies.summary import CONFIDENCE
from afterkernel.studies.summary import format_table
from afterkernel.studies.summary import metric_summary
from afterkernel.studies.summary import SUMMARY_FILE
from afterkernel.studies.summary import summarize_metrics as summarize
from afterkernel.studies.summary import write_metrics_summary as write_summary
