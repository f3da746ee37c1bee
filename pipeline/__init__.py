"""The user pipeline's shared code: one record contract, one config, pure transforms.

The Airflow DAG (``dags/kafka_stream.py``) and the Spark job (``spark_stream.py``) both
import from here, so the record's fields and every endpoint are defined exactly once.
"""
