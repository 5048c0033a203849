"""The worker adapter: the poller and scheduler groups that drive the job queue."""
