"""The `genrank-ranker` pyfunc, defined by code (MLflow models-from-code): no pickle is written or read."""
import mlflow

from genrank_assets.ml.serving.registry import RankerPyfunc

mlflow.models.set_model(RankerPyfunc())
