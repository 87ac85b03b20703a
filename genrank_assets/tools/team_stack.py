"""The team stack on one machine: PostgreSQL, an MLflow tracking server on it, and Dagster's daemon and UI on it.

``python -m genrank_assets.tools.team_stack start`` (``make team-stack``) starts, under GENRANK_HOME/team/:

* **PostgreSQL** (Debian's postgresql-15 binaries; `initdb`/`pg_ctl` from PATH or /usr/lib/postgresql/15/bin) in
  `postgres/` (GENRANK_TEAM_PGDATA to put it elsewhere), listening on 127.0.0.1 only, trust authentication
  for the local superuser `genrank`, with two databases: `dagster` and `mlflow`. As root it runs as the
  `postgres` user (PostgreSQL refuses root), so that user must be able to reach the data folder.
* **MLflow** `mlflow server` with the `mlflow` database as backend store and `mlartifacts/` as the artifact
  store it serves (clients upload and download through it: nothing needs the folder but the server);
  the `genrank` experiment is created on it, so runs use the server's artifact store.
* **Dagster** an instance in `dagster/` whose run, event and schedule storage is the `dagster` database
  (dagster-postgres) with the queued run coordinator, the daemon (`dagster-daemon run`: queued runs, the
  sensor, the schedule, run monitoring) and the UI (`dagster-webserver`).

Every process is started with default signal handling restored (background shells here ignore SIGTERM, and
an ignored signal survives exec), in a session of its own; its PID goes to `team/pids/<name>.pid`. ``stop``
(``make team-stack-stop``) signals each by that PID (SIGTERM, SIGKILL after a grace period; PostgreSQL gets
SIGINT, its fast shutdown) and removes the PID file. ``env`` prints the variables that point a shell at it
(``eval "$(python -m genrank_assets.tools.team_stack env)"``): DAGSTER_HOME, MLFLOW_TRACKING_URI.
"""
from __future__ import annotations

import argparse
import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import yaml

import genrank_assets.paths as paths

PG_BIN_DIRS = ("/usr/lib/postgresql/15/bin",)  # Debian's postgresql-15 (also on PATH through postgresql-common)
PG_USER = "genrank"  # the cluster's superuser; trust authentication on 127.0.0.1 only
PG_DATABASES = ("dagster", "mlflow")
RUN_AS_WHEN_ROOT = "postgres"  # the system user Debian's package creates; PostgreSQL will not run as root
PGDATA_ENV = "GENRANK_TEAM_PGDATA"
PORTS = {"postgres": 5433, "mlflow": 5001, "dagster": 3001}  # beside make ui's 3000 and make mlflow-ui's 5000
PORT_ENVS = {"postgres": "GENRANK_TEAM_PG_PORT", "mlflow": "GENRANK_TEAM_MLFLOW_PORT",
             "dagster": "GENRANK_TEAM_UI_PORT"}
START_TIMEOUT_S = 180
STOP_GRACE_S = 30
PROCESSES = ("dagster-webserver", "dagster-daemon", "mlflow", "postgres")  # stop order: clients first


class TeamStackError(RuntimeError):
    """A piece of the stack would not start or stop; the message says which and where its log is."""


@dataclass(frozen=True)
class Stack:
    """Where one team stack keeps its files and which ports it listens on."""

    home: Path
    pg_port: int
    mlflow_port: int
    ui_port: int
    pgdata: Path

    @classmethod
    def from_env(cls, home: str | os.PathLike | None = None, **ports: int) -> Stack:
        home_path = paths.genrank_home(home)
        chosen = {}
        for name, default in PORTS.items():
            raw = ports.get(name) or os.environ.get(PORT_ENVS[name]) or default
            try:
                chosen[name] = int(raw)
            except ValueError as err:
                raise ValueError(f"{PORT_ENVS[name]}={raw!r} is not a port number") from err
            if not 0 < chosen[name] < 65536:
                raise ValueError(f"{PORT_ENVS[name]}={raw!r} is not a port number")
        pgdata = Path(os.environ.get(PGDATA_ENV) or home_path / "team" / "postgres").resolve()
        return cls(home_path, chosen["postgres"], chosen["mlflow"], chosen["dagster"], pgdata)

    @property
    def root(self) -> Path:
        return self.home / "team"

    @property
    def dagster_home(self) -> Path:
        return self.root / "dagster"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def pids(self) -> Path:
        return self.root / "pids"

    @property
    def mlflow_uri(self) -> str:
        return f"http://127.0.0.1:{self.mlflow_port}"

    @property
    def ui_url(self) -> str:
        return f"http://127.0.0.1:{self.ui_port}"

    def postgres_uri(self, database: str, driver: str = "") -> str:
        """`driver` psycopg2 for SQLAlchemy (MLflow, dagster-postgres): SQLAlchemy 2.1 picks psycopg 3 for a plain
        postgresql:// URI, and what dagster-postgres installs is psycopg2."""
        scheme = f"postgresql+{driver}" if driver else "postgresql"
        return f"{scheme}://{PG_USER}@127.0.0.1:{self.pg_port}/{database}"

    def env(self) -> dict[str, str]:
        """What a process of the stack, or a shell using it, needs."""
        return {"GENRANK_HOME": str(self.home), "DAGSTER_HOME": str(self.dagster_home),
                "MLFLOW_TRACKING_URI": self.mlflow_uri}


# -- processes ------------------------------------------------------------------------------------------------

def _default_signals() -> None:
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_DFL)


def _spawn(stack: Stack, name: str, argv: list[str], env: dict[str, str]) -> int:
    stack.logs.mkdir(parents=True, exist_ok=True)
    stack.pids.mkdir(parents=True, exist_ok=True)
    with open(stack.logs / f"{name}.log", "ab") as log:
        proc = subprocess.Popen(argv, cwd=paths.REPO_DIR, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, preexec_fn=_default_signals)
    (stack.pids / f"{name}.pid").write_text(f"{proc.pid}\n")
    return proc.pid


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (exited, not yet reaped by its parent) counts as gone
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def _read_pid(stack: Stack, name: str) -> int | None:
    try:
        return int((stack.pids / f"{name}.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _log_tail(stack: Stack, name: str, n: int = 3000) -> str:
    try:
        return (stack.logs / f"{name}.log").read_text(errors="replace")[-n:]
    except OSError:
        return ""


def _wait(stack: Stack, name: str, ready, pid: int | None = None) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if ready():
            return
        if pid is not None and not _alive(pid):
            raise TeamStackError(f"{name} exited while starting; {stack.logs / (name + '.log')}:\n"
                                 f"{_log_tail(stack, name)}")
        time.sleep(1)
    raise TeamStackError(f"{name} did not come up in {START_TIMEOUT_S} s; {stack.logs / (name + '.log')}:\n"
                         f"{_log_tail(stack, name)}")


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status == 200
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
        return False


# -- PostgreSQL -----------------------------------------------------------------------------------------------

def pg_tool(name: str) -> str:
    for folder in PG_BIN_DIRS:
        if (Path(folder) / name).is_file():
            return str(Path(folder) / name)
    found = shutil.which(name)
    if found:
        return found
    raise TeamStackError(f"PostgreSQL's {name} not found (Debian: apt-get install postgresql-15)")


def _as_pg_user(argv: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: as root, run its tools as the `postgres` system user."""
    if os.geteuid() != 0:
        return argv
    return ["runuser", "-u", RUN_AS_WHEN_ROOT, "--", *argv]


def _prepare_pgdata(stack: Stack) -> None:
    stack.pgdata.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        return
    try:
        user = pwd.getpwnam(RUN_AS_WHEN_ROOT)
    except KeyError as err:
        raise TeamStackError(f"running as root, PostgreSQL needs the {RUN_AS_WHEN_ROOT!r} user "
                             "(Debian's postgresql-15 package creates it)") from err
    os.chown(stack.pgdata, user.pw_uid, user.pw_gid)
    os.chmod(stack.pgdata, 0o700)
    check = subprocess.run(_as_pg_user(["test", "-w", str(stack.pgdata)]))
    if check.returncode != 0:
        raise TeamStackError(f"the {RUN_AS_WHEN_ROOT} user cannot reach {stack.pgdata} (a parent folder is closed "
                             f"to it); set {PGDATA_ENV} to a folder it can reach, e.g. under /var/tmp")


def _pg_ready(stack: Stack) -> bool:
    probe = subprocess.run([pg_tool("pg_isready"), "-h", "127.0.0.1", "-p", str(stack.pg_port), "-U", PG_USER],
                           capture_output=True)
    return probe.returncode == 0


def start_postgres(stack: Stack) -> None:
    _prepare_pgdata(stack)
    if not (stack.pgdata / "PG_VERSION").exists():
        init = subprocess.run(_as_pg_user([pg_tool("initdb"), "-D", str(stack.pgdata), "-U", PG_USER,
                                           "--auth=trust", "-E", "UTF8", "--locale=C"]),
                              capture_output=True, text=True)
        if init.returncode != 0:
            raise TeamStackError(f"initdb {stack.pgdata} failed:\n{init.stdout[-2000:]}{init.stderr[-2000:]}")
    stack.logs.mkdir(parents=True, exist_ok=True)
    log = stack.pgdata / "server.log"  # written by the server's own user
    # The socket sits in the data folder: /var/run/postgresql may not exist or be writable here.
    options = f"-p {stack.pg_port} -h 127.0.0.1 -k {stack.pgdata}"
    start = subprocess.run(_as_pg_user([pg_tool("pg_ctl"), "-D", str(stack.pgdata), "-l", str(log), "-o", options,
                                        "-w", "-t", str(START_TIMEOUT_S), "start"]),
                           capture_output=True, text=True, preexec_fn=_default_signals)
    if start.returncode != 0:
        raise TeamStackError(f"pg_ctl start failed:\n{start.stdout[-1500:]}{start.stderr[-1500:]}\n"
                             f"{log.read_text(errors='replace')[-2000:] if log.exists() else ''}")
    # pg_ctl has left; the postmaster's PID is the first line of its postmaster.pid.
    stack.pids.mkdir(parents=True, exist_ok=True)
    (stack.pids / "postgres.pid").write_text((stack.pgdata / "postmaster.pid").read_text().split()[0] + "\n")
    _wait(stack, "postgres", lambda: _pg_ready(stack))
    for database in PG_DATABASES:
        exists = subprocess.run([pg_tool("psql"), "-h", "127.0.0.1", "-p", str(stack.pg_port), "-U", PG_USER,
                                 "-d", "postgres", "-tAc", f"select 1 from pg_database where datname = '{database}'"],
                                capture_output=True, text=True)
        if exists.stdout.strip() != "1":
            made = subprocess.run([pg_tool("createdb"), "-h", "127.0.0.1", "-p", str(stack.pg_port), "-U", PG_USER,
                                   database], capture_output=True, text=True)
            if made.returncode != 0:
                raise TeamStackError(f"createdb {database} failed: {made.stderr.strip()}")


# -- MLflow and Dagster ---------------------------------------------------------------------------------------

def _bin(name: str) -> str:
    return shutil.which(name, path=str(Path(sys.executable).parent)) or name


def start_mlflow(stack: Stack, env: dict[str, str]) -> None:
    artifacts = stack.root / "mlartifacts"
    artifacts.mkdir(parents=True, exist_ok=True)
    pid = _spawn(stack, "mlflow", [
        _bin("mlflow"), "server", "--backend-store-uri", stack.postgres_uri("mlflow", driver="psycopg2"),
        "--artifacts-destination", str(artifacts), "--host", "127.0.0.1", "--port", str(stack.mlflow_port),
        "--workers", "1",
    ], {**env, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"})  # GenAI job runners genrank does not use
    _wait(stack, "mlflow", lambda: _http_ok(f"{stack.mlflow_uri}/health"), pid)
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=stack.mlflow_uri, registry_uri=stack.mlflow_uri)
    if client.get_experiment_by_name("genrank") is None:
        # Created here, on the server, so its artifact location is the server's store (mlflow-artifacts:/);
        # `registry.connect` would create it with a folder of this machine.
        client.create_experiment("genrank")


def dagster_instance_config(stack: Stack) -> dict:
    """genrank_assets/dagster.yaml (run monitoring, telemetry) with storage in PostgreSQL and queued runs."""
    config = yaml.safe_load(paths.DAGSTER_YAML.read_text()) or {}
    config["storage"] = {"postgres": {"postgres_url": stack.postgres_uri("dagster", driver="psycopg2")}}
    # The daemon takes runs from the queue and launches them: what the UI, `dagster job launch`, the sensor and
    # the schedule submit is run by it.
    config["run_coordinator"] = {"module": "dagster.core.run_coordinator", "class": "QueuedRunCoordinator"}
    return config


def start_dagster(stack: Stack, env: dict[str, str]) -> None:
    stack.dagster_home.mkdir(parents=True, exist_ok=True)
    (stack.dagster_home / "dagster.yaml").write_text(yaml.safe_dump(dagster_instance_config(stack), sort_keys=False))
    workspace = str(paths.REPO_DIR / "workspace.yaml")
    daemon = _spawn(stack, "dagster-daemon", [_bin("dagster-daemon"), "run", "-w", workspace], env)
    ui = _spawn(stack, "dagster-webserver", [_bin("dagster-webserver"), "-h", "127.0.0.1", "-p", str(stack.ui_port),
                                             "-w", workspace], env)
    _wait(stack, "dagster-webserver", lambda: _http_ok(f"{stack.ui_url}/server_info"), ui)
    _wait(stack, "dagster-daemon", lambda: daemon_heartbeats(stack), daemon)


def daemon_heartbeats(stack: Stack) -> bool:
    """The daemon's run queue and sensor loops have reported to the instance (they heartbeat into PostgreSQL)."""
    query = "select count(*) from daemon_heartbeats where daemon_type in ('QUEUED_RUN_COORDINATOR', 'SENSOR')"
    probe = subprocess.run([pg_tool("psql"), "-h", "127.0.0.1", "-p", str(stack.pg_port), "-U", PG_USER, "-d",
                            "dagster", "-tAc", query], capture_output=True, text=True)
    return probe.returncode == 0 and probe.stdout.strip() == "2"


# -- the whole stack ------------------------------------------------------------------------------------------

def running(stack: Stack) -> dict[str, int]:
    """Processes of the stack whose PID file names a live process."""
    out = {}
    for name in PROCESSES:
        pid = _read_pid(stack, name)
        if pid is not None and _alive(pid):
            out[name] = pid
    return out


def start(stack: Stack) -> dict[str, int]:
    already = running(stack)
    if already:
        raise TeamStackError(f"the team stack of {stack.home} is already running ({already}); "
                             "`make team-stack-stop` first")
    env = {k: v for k, v in os.environ.items() if k not in ("GENRANK_PRESET", "GENRANK_RETRAIN_CRON")}
    env.update(stack.env())
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '/usr/bin:/bin')}"
    try:
        start_postgres(stack)
        start_mlflow(stack, env)
        start_dagster(stack, env)
    except BaseException:
        stop(stack)  # nothing half-started is left behind
        raise
    return running(stack)


def _signal(pid: int, sig: int, group: bool) -> None:
    try:
        os.killpg(pid, sig) if group else os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def stop(stack: Stack) -> list[str]:
    """Stop every process of the stack by the PID in its file; the names of those that were running."""
    stopped = []
    for name in PROCESSES:
        pid = _read_pid(stack, name)
        if pid is None:
            continue
        if _alive(pid):
            # Our own processes lead their session (their children, e.g. code servers, are in its group);
            # the postmaster stops its children itself on SIGINT (fast shutdown).
            group = name != "postgres"
            _signal(pid, signal.SIGINT if name == "postgres" else signal.SIGTERM, group)
            deadline = time.monotonic() + STOP_GRACE_S
            while _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.3)
            if _alive(pid):
                _signal(pid, signal.SIGKILL, group)
            stopped.append(name)
        (stack.pids / f"{name}.pid").unlink(missing_ok=True)
    return stopped


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=["start", "stop", "status", "env"])
    args = parser.parse_args(argv)
    stack = Stack.from_env()
    if args.action == "start":
        try:
            pids = start(stack)
        except TeamStackError as err:
            print(f"team stack: {err}", file=sys.stderr)
            return 1
        print(f"team stack of {stack.home} running: {json.dumps(pids)}")
        print(f"  Dagster UI      {stack.ui_url} (DAGSTER_HOME={stack.dagster_home}, storage in PostgreSQL)")
        print(f"  MLflow server   {stack.mlflow_uri} (backend {stack.postgres_uri('mlflow')})")
        print(f"  PostgreSQL      127.0.0.1:{stack.pg_port} ({stack.pgdata})")
        print(f"  logs {stack.logs}; PIDs {stack.pids}")
        print('  use it from a shell: eval "$(.venv/bin/python -m genrank_assets.tools.team_stack env)"')
    elif args.action == "stop":
        print(f"stopped: {', '.join(stop(stack)) or 'nothing was running'}")
    elif args.action == "status":
        print(json.dumps(running(stack)))
    else:
        for key, value in stack.env().items():
            print(f"export {key}={value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
