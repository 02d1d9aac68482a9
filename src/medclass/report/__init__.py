"""The run's model card (``plots/report.html``) and the offline ``dvc plots`` template."""
