"""Jobs: the per-job supervisor actor, the runner that drives one job, and (later) the manager."""
