"""Training: the step plan, optimizers, metrics, the trainer, data and what training records."""
