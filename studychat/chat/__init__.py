"""The chat domain, without Flask: the queue, the job, the model client, answers, budgets."""
