"""MLflow models-from-code: one file per registered model, each defining the pyfunc with `set_model`.

MLflow copies the file into the model's artifacts and runs it at load time instead of unpickling a
`python_model.pkl`; the weights beside it are plain files (safetensors, JSON, npz without pickles).
`ml.serving.registry` names these files (TIGER_CODE, RANKER_CODE, RECOMMENDER_CODE).
"""
