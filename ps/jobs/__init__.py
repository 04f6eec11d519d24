"""Jobs: admission, the job manager and store, the per-job supervisor and its collaborators."""
