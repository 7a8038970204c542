"""Jobs: the status and results of generation jobs."""
