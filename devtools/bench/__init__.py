"""`make bench`: simulated participants against web and worker on real servers."""
