"""The `genrank-ltr` pyfunc, defined by code (MLflow models-from-code): no pickle is written or read."""
import mlflow

from genrank_assets.ml.serving.registry import LTRPyfunc

mlflow.models.set_model(LTRPyfunc())
