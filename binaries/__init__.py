"""Thin absl programs: flags -> afterkernel calls -> result files."""
