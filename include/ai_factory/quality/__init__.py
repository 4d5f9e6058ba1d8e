"""Data quality: the GX suite built from the dataset spec, validation, publish or quarantine."""
