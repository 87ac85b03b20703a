"""The `genrank-recommender` pyfunc, defined by code (MLflow models-from-code): no pickle is written or read."""
import mlflow

from genrank_assets.ml.serving.registry import RecommenderPyfunc

mlflow.models.set_model(RecommenderPyfunc())
