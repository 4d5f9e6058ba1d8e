"""AI Factory: the logic behind the Airflow DAGs (importable without Airflow running)."""

__version__ = "0.1.0"
