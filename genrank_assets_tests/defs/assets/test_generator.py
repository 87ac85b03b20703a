"""The `generator` assets in the test-preset build: the registered TIGER model is the trained one."""
import torch

from genrank_assets.ml.serving import registry


def test_tiger_from_registry_gives_identical_logits(built):
    champion = registry.alias_version(registry.TIGER_NAME)
    a = registry.load_python_model(f"models:/{registry.TIGER_NAME}/{champion}").generator
    b = registry.load_python_model(f"models:/{registry.TIGER_NAME}@champion").generator
    batch = a.encoder.encode_batch(["深夜 抒情", "gym"])
    labels = torch.tensor([[a.vocab.code_token_ids(a.code_table.codes[0])[0]]] * 2)
    with torch.no_grad():
        la = a.model(**batch, labels=labels).logits
        lb = b.model(**batch, labels=labels).logits
    assert torch.equal(la, lb)
