"""A models-from-code stand-in for the genrank pyfuncs (loaded by MLflow, not collected by pytest): its state is
the text file in the logged model dir."""
from pathlib import Path

import mlflow


class ReadsItsDir(mlflow.pyfunc.PythonModel):
    def load_context(self, context):
        self.artifact_paths = dict(context.artifacts)
        self.text = (Path(context.artifacts["model_dir"]) / "weights.txt").read_text()

    def predict(self, context, model_input, params=None):
        return [self.text] * len(model_input)


mlflow.models.set_model(ReadsItsDir())
