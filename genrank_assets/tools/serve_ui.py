"""Run `dagster dev` (or, with ``--mlflow``, the MLflow UI on GENRANK_HOME's store) with default signal
handling restored.

Processes started in the background by some shells and sandboxes inherit an *ignored* SIGTERM; an ignored
signal survives exec, and the Dagster webserver would then not stop when asked. Resetting to SIG_DFL first
makes `kill PID` work.
"""
from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
from pathlib import Path

import genrank_assets.paths as paths


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", default="3000")
    parser.add_argument("--workspace", default=str(paths.REPO_DIR / "workspace.yaml"))
    parser.add_argument("--mlflow", action="store_true",
                        help="the MLflow UI on MLFLOW_TRACKING_URI (default: GENRANK_HOME's sqlite store) instead")
    args = parser.parse_args(argv)
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_DFL)
    if args.mlflow:
        store = paths.mlflow_tracking_uri()
        if store.startswith(("http://", "https://", "databricks")):
            raise SystemExit(f"MLFLOW_TRACKING_URI is a tracking server ({store}): open its own UI")
        mlflow = shutil.which("mlflow", path=str(Path(sys.executable).parent)) or "mlflow"
        # The server's background job runners are for GenAI features genrank does not use: 2 cores stay free.
        os.environ.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
        os.execv(mlflow, [mlflow, "ui", "--backend-store-uri", store, "--host", args.host,
                          "--port", str(args.port)])
    dagster = shutil.which("dagster", path=str(Path(sys.executable).parent)) or "dagster"
    home = os.environ.setdefault("DAGSTER_HOME", str(Path(os.environ.get("GENRANK_HOME", ".genrank")).resolve() / "dagster"))
    Path(home).mkdir(parents=True, exist_ok=True)
    os.execv(dagster, [dagster, "dev", "-h", args.host, "-p", str(args.port), "-w", args.workspace])


if __name__ == "__main__":
    main()
