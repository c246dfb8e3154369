"""Experiment tracking: loggers, callbacks and plots."""
