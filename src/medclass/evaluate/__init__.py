"""Evaluation: metrics, ROC curves and DVC-ready plot files."""
