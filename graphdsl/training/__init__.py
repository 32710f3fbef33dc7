"""Training: options, optimizers, metrics, the step plan and its trace layout, the trainer (its
examples, evaluation and progress display), data loading and what training records."""
