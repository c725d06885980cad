"""A registered model's code (MLflow models from code): loading the model runs this file — the
ctxtag package's own code, carried in the model's code paths — and unpickles nothing."""

from mlflow.models import set_model

from ctxtag.serving.pyfunc import ContextModel

set_model(ContextModel())
