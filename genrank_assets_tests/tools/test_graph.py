"""docs/architecture.md's asset graph and stage map are the ones generated from the Definitions."""
import re

import dagster as dg
import pytest

import genrank_assets.paths as paths
from genrank_assets.definitions import defs
from genrank_assets.defs.assets import in_stage_order
from genrank_assets.defs.folds import FOLD_GROUP
from genrank_assets.tools import graph

DOC = paths.REPO_DIR / graph.DOC


def test_architecture_doc_graph_matches_the_definitions():
    section = graph.section_in(DOC.read_text(encoding="utf-8"))
    assert section is not None, f"{graph.DOC} lost its generated section; put back the lines\n{graph.BEGIN}\n{graph.END}"
    assert section == graph.generated_section(), (
        f"{graph.DOC}'s asset graph or stage map is out of date: run `{graph.WRITE_COMMAND}` and commit {graph.DOC}"
    )


def test_the_readme_links_to_the_generated_graph():
    readme = (paths.REPO_DIR / "README.md").read_text(encoding="utf-8")
    assert re.search(rf"\]\({re.escape(graph.DOC.as_posix())}(#[^)]*)?\)", readme), f"README.md links to {graph.DOC}"
    assert graph.section_in(readme) is None, "the generated graph lives in docs/architecture.md, not in README.md"


def test_edges_are_the_real_dependencies_and_every_asset_is_drawn():
    text = graph.mermaid(graph.asset_nodes(defs))
    edges = {tuple(line.strip().split(" --> ")) for line in text.splitlines() if " --> " in line}
    expected = {(d.asset_key.to_user_string(), s.key.to_user_string())
                for s in defs.resolve_all_asset_specs() for d in s.deps}
    assert edges == expected
    # The ones the hand-drawn graph missed, and none between the outputs of one multi-asset.
    assert {("semantic_ids", "tiger_model"), ("upstream_corpus", "tiger_model"), ("playlist_corpus", "upstream_corpus"), ("song_vectors", "ranker_model"),
            ("raw_songs", "ranker_model")} <= edges
    ingest = {k.to_user_string() for k in defs.resolve_assets_def("raw_playlists").keys}
    assert "ingested_batches" in ingest and not {(a, b) for a, b in edges if a in ingest and b in ingest}
    for key in defs.resolve_all_asset_keys():
        assert key.to_user_string() in text


def test_stage_map_lists_each_stage_with_its_modules():
    nodes = graph.asset_nodes(defs)
    table = graph.stage_table(nodes)
    rows = {line.split(" | ")[0].strip("| `"): line for line in table.splitlines()[2:]}
    groups = {n.group for n in nodes}
    assert list(rows) == in_stage_order(groups)
    assert "`defs/assets/vectors.py`" in rows["vectors"] and "`ml/vectors/song_vectors.py`" in rows["vectors"]
    assert "`ml/data/ingest.py`" in rows["data"]
    # One name per stage: the assets of group <stage> are written in defs/assets/<stage>.py, and ml/<stage>/ exists.
    # The cross-fitting folds' group is no stage: defs/crossfit.py copies the stages' own asset functions.
    stage_modules = {f"genrank_assets.defs.assets.{g}" for g in groups}
    for node in nodes:
        if node.group == FOLD_GROUP:
            assert node.module in stage_modules | {"genrank_assets.defs.crossfit"}, node
        else:
            assert node.module == f"genrank_assets.defs.assets.{node.group}", node
    for group in groups - {FOLD_GROUP}:
        assert (paths.PACKAGE_DIR / "ml" / group).is_dir(), group


def test_blocking_checks_are_marked():
    table = graph.asset_table(graph.asset_nodes(defs))
    corpus = next(line for line in table.splitlines() if line.startswith("| `playlist_corpus`"))
    assert "**`playlist_corpus_valid`**" in corpus and "`playlist_corpus_split_proportions`" in corpus
    assert "**`playlist_corpus_split_proportions`**" not in corpus


def test_a_new_asset_changes_the_section_and_write_updates_it(tmp_path):
    @dg.asset(group_name="serving", deps=["evaluation_report"])
    def probe_asset() -> None:
        """A probe."""

    extended = dg.Definitions(assets=[*defs.assets, probe_asset], asset_checks=defs.asset_checks,
                              resources=defs.resources)
    section = graph.generated_section(extended)
    assert "evaluation_report --> probe_asset" in section and section != graph.generated_section()
    doc = tmp_path / "architecture.md"
    doc.write_text(f"# x\n\n{graph.BEGIN}\nold\n{graph.END}\n\nafter\n", encoding="utf-8")
    assert graph.write_section(doc, section) and not graph.write_section(doc, section)
    assert doc.read_text(encoding="utf-8") == f"# x\n\n{section}\n\nafter\n"
    doc.write_text("no markers\n", encoding="utf-8")
    with pytest.raises(ValueError, match="no generated section"):
        graph.write_section(doc, section)


def test_main_prints_the_section(capsys):
    assert graph.main([]) == 0
    assert capsys.readouterr().out.strip() == graph.generated_section()


def test_write_defaults_to_the_architecture_doc(monkeypatch):
    written = []
    monkeypatch.setattr(graph, "write_section", lambda path, section: written.append(path) or False)
    assert graph.main(["--write"]) == 0 and written == [paths.REPO_DIR / graph.DOC]
    assert graph.main(["--write", "other.md"]) == 0 and written[-1].name == "other.md"
