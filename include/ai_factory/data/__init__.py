"""Data zones' contents: the synthetic demo dataset and its corruptions."""
