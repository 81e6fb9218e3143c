"""A run's life: run ids and provenance (versions, git commit), the run lifecycle of a results folder (fingerprint,
run-id reuse, finished groups, ``run.json`` at start and finish), the registry of finished runs that the nightly gate
and ``query`` read, and starting Ray. Used by every command that runs work: evaluate, regress, clic, sweep, train.
"""
