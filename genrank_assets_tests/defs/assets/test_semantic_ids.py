"""The `semantic_ids` assets in the test-preset build."""


def test_every_song_has_a_code(built):
    checks = {e.check_name: e.passed for e in built.result.get_asset_check_evaluations()}
    assert checks["every_song_has_a_code"], checks
