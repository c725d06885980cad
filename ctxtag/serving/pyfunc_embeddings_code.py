"""The listening embeddings' registered code (MLflow models from code; see pyfunc_code.py)."""

from mlflow.models import set_model

from ctxtag.serving.pyfunc import ListeningEmbeddings

set_model(ListeningEmbeddings())
