"""Training: losses, optimisers, schedules, the epoch engine and the fit loop."""
