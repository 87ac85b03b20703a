"""Move a GENRANK_HOME: MLflow's sqlite store and its MLmodel files record absolute artifact paths, so a home
restored from a backup or mounted at another path finds no artifacts until they are rewritten.

`relocate_home(new_home)` rewrites every absolute path under the old home (read from the `genrank`
experiment's artifact location, or given) to the new one, in every text column of `mlflow.db` and in every
`MLmodel` file under the artifact root. The CLI command is `genrank relocate-home`. Run it with nothing else
using the home (no materialisation, no server). A home that uses a tracking server (MLFLOW_TRACKING_URI) has
no local paths to move: the server's artifact store is addressed by its own URIs.
"""
from __future__ import annotations

import sqlite3
from pathlib import Path

import genrank_assets.paths as paths

EXPERIMENT = "genrank"


def recorded_home(home: str | Path) -> Path | None:
    """The home the MLflow store was created in (from the experiment's artifact root), None when there is none."""
    db = paths.mlflow_db_path(home)
    if not db.exists():
        return None
    con = sqlite3.connect(db)
    try:
        row = con.execute("select artifact_location from experiments where name = ?", (EXPERIMENT,)).fetchone()
    finally:
        con.close()
    if not row or not row[0]:
        return None
    location = row[0].removeprefix("file://")
    root_name = paths.mlflow_artifact_root("/").name
    return Path(location).parent if Path(location).name == root_name else None


def _text_columns(con: sqlite3.Connection) -> list[tuple[str, str]]:
    tables = [r[0] for r in con.execute("select name from sqlite_master where type = 'table'")]
    out = []
    for table in tables:
        for _, column, kind, *_ in con.execute(f'pragma table_info("{table}")'):
            if "CHAR" in kind.upper() or "TEXT" in kind.upper() or kind == "":
                out.append((table, column))
    return out


def relocate_home(new_home: str | Path, old_home: str | Path | None = None) -> dict[str, int]:
    """Rewrite paths under `old_home` (default: where the store was created) to `new_home`; counts of changes."""
    new = paths.genrank_home(new_home)
    db = paths.mlflow_db_path(new)
    if not db.exists():
        raise FileNotFoundError(f"no MLflow store at {db}: nothing to relocate")
    old = Path(old_home).expanduser() if old_home else recorded_home(new)
    if old is None:
        raise ValueError(f"{db} does not say where it was created (no `{EXPERIMENT}` experiment): pass the old path")
    old_s, new_s = str(old).rstrip("/"), str(new)
    if old_s == new_s:
        return {"rows": 0, "mlmodel_files": 0}
    rows = 0
    con = sqlite3.connect(db)
    try:
        with con:
            for table, column in _text_columns(con):
                cur = con.execute(
                    f'update "{table}" set "{column}" = replace("{column}", ?, ?) where "{column}" like ?',
                    (old_s + "/", new_s + "/", f"%{old_s}/%"),
                )
                rows += cur.rowcount
    finally:
        con.close()
    files = 0
    for mlmodel in paths.mlflow_artifact_root(new).rglob("MLmodel"):
        text = mlmodel.read_text(encoding="utf-8")
        if old_s + "/" in text:
            mlmodel.write_text(text.replace(old_s + "/", new_s + "/"), encoding="utf-8")
            files += 1
    return {"rows": rows, "mlmodel_files": files}
