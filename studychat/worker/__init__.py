"""The worker process: many jobs at once on threads, their timeouts, and recovery."""
