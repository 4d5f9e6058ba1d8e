"""Airflow-facing helpers shared by the DAG files: assets, defaults, callbacks.

Only light imports here (``airflow.sdk``): DAG files import this at parse time.
"""
