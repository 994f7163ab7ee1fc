"""The admin surface under /admin: token guard, live study page, budget, rq-dashboard."""
