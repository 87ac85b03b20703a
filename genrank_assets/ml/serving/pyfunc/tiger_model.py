"""The `genrank-tiger` pyfunc, defined by code (MLflow models-from-code): no pickle is written or read."""
import mlflow

from genrank_assets.ml.serving.registry import TigerPyfunc

mlflow.models.set_model(TigerPyfunc())
