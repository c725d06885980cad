-- MLflow's backend store beside Airflow's metadata database, on the same server.
CREATE DATABASE mlflow OWNER ctxtag;
