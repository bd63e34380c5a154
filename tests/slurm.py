"""A real single-node SLURM cluster on 127.0.0.1 for tests: munged, slurmctld and slurmd.

Everything lives in one temporary folder (munge key and socket, slurm.conf, state, spool,
logs), the daemons listen on free ports of 127.0.0.1 and run in the foreground as
children of the test process, so they are stopped by pid and nothing is left behind.
Clients (sbatch, squeue, sinfo, and dask-jobqueue, which calls them) find the cluster
through ``SLURM_CONF``. Finished jobs are recorded by ``jobcomp/filetxt`` (``sacct`` needs
slurmdbd, which a test cluster does without).
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

PROGRAMS = ("munged", "munge", "slurmctld", "slurmd", "sbatch", "sinfo", "squeue", "scontrol", "scancel")
NODE = "eetrend-node"
START_TIMEOUT = 60.0  # seconds until the node must be idle; it takes about 1 s
COMMAND_TIMEOUT = 15.0  # a client command; MessageTimeout below bounds each of its messages


def missing_programs() -> list[str]:
    """The SLURM and munge programs not on PATH (Debian: apt-get install slurm-wlm munge)."""
    return [name for name in PROGRAMS if shutil.which(name) is None]


def _free_ports(count: int) -> list[int]:
    """Ports of 127.0.0.1 free right now, all different (held open together while chosen)."""
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


@dataclass
class Slurm:
    """A running single-node cluster: ``env`` points SLURM clients at it."""

    folder: Path
    conf: Path
    jobcomp: Path
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "SLURM_CONF": str(self.conf)}

    def command(self, *args: str) -> str:
        """A SLURM client command's standard output (raises if it fails or takes too long)."""
        done = subprocess.run(args, env=self.env, capture_output=True, text=True, timeout=COMMAND_TIMEOUT)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} failed: {done.stderr.strip()}")
        return done.stdout

    def finished_jobs(self) -> list[dict[str, str]]:
        """Every job that ended, as recorded by jobcomp/filetxt (JobId, Name, JobState, WorkDir, ...)."""
        if not self.jobcomp.exists():
            return []
        jobs = []
        for line in self.jobcomp.read_text().splitlines():
            fields = dict(part.split("=", 1) for part in line.split() if "=" in part)
            jobs.append(fields)
        return jobs

    def logs(self) -> str:
        """The daemons' logs, for a failure message."""
        texts = []
        for path in sorted((self.folder / "log").glob("*")):
            texts.append(f"--- {path.name}\n" + "\n".join(path.read_text(errors="replace").splitlines()[-30:]))
        return "\n".join(texts)


def _write_conf(folder: Path, ctld_port: int, slurmd_port: int) -> Path:
    host = socket.gethostname().split(".")[0]  # slurmctld runs only where SlurmctldHost names this host
    cpus = os.cpu_count() or 1
    memory = min(2048, os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20)
    conf = folder / "slurm.conf"
    conf.write_text(f"""\
ClusterName=eetrend-test
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket={folder / "munge" / "socket"}
CredType=cred/munge
StateSaveLocation={folder / "state"}
SlurmdSpoolDir={folder / "spool"}
SlurmctldPidFile={folder / "slurmctld.pid"}
SlurmdPidFile={folder / "slurmd.pid"}
SlurmctldLogFile={folder / "log" / "slurmctld.log"}
SlurmdLogFile={folder / "log" / "slurmd.log"}
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SwitchType=switch/none
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc={folder / "log" / "jobcomp.txt"}
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/builtin
ReturnToService=2
MessageTimeout=5
MailProg=/bin/true
DebugFlags=NO_CONF_HASH
NodeName={NODE} NodeAddr=127.0.0.1 NodeHostname={host} CPUs={cpus} RealMemory={memory} State=UNKNOWN
PartitionName=debug Nodes={NODE} Default=YES MaxTime=INFINITE State=UP
""")
    return conf


def _wait(condition, what: str, slurm: Slurm, timeout: float) -> None:
    """Poll ``condition`` until true; fail with the daemons' logs if one exits or time runs out."""
    deadline = time.monotonic() + timeout
    while True:
        for name, process in slurm.processes.items():
            if process.poll() is not None:
                raise RuntimeError(f"{name} exited with {process.returncode} while waiting for {what}\n{slurm.logs()}")
        if condition():
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} not within {timeout:.0f} s\n{slurm.logs()}")
        time.sleep(0.1)


def _node_idle(slurm: Slurm) -> bool:
    try:
        return slurm.command("sinfo", "-h", "-N", "-o", "%N %T").split() == [NODE, "idle"]
    except (RuntimeError, subprocess.TimeoutExpired):
        return False


def _start(slurm: Slurm) -> None:
    folder = slurm.folder
    for name in ("munge", "state", "spool", "log"):
        (folder / name).mkdir(mode=0o700)
    key = folder / "munge" / "key"
    key.write_bytes(secrets.token_bytes(128))
    key.chmod(0o600)
    ctld_port, slurmd_port = _free_ports(2)
    _write_conf(folder, ctld_port, slurmd_port)
    socket_path = folder / "munge" / "socket"

    def run(name: str, *args: str) -> None:
        out = open(folder / "log" / f"{name}.out", "wb")  # noqa: SIM115 (the daemon keeps it)
        slurm.processes[name] = subprocess.Popen([name, *args], env=slurm.env, stdout=out, stderr=subprocess.STDOUT,
                                                 stdin=subprocess.DEVNULL, start_new_session=True)
        out.close()

    # --force: munged would refuse a socket folder inside pytest's private (0700) temporary folder.
    run("munged", "--foreground", "--force", f"--key-file={key}", f"--socket={socket_path}",
        f"--pid-file={folder / 'munge' / 'pid'}", f"--log-file={folder / 'log' / 'munged.log'}",
        f"--seed-file={folder / 'munge' / 'seed'}")

    def munge_answers() -> bool:
        if not socket_path.exists():
            return False
        done = subprocess.run(["munge", "-n", "-S", str(socket_path)], capture_output=True, timeout=COMMAND_TIMEOUT)
        return done.returncode == 0

    _wait(munge_answers, "munged to answer", slurm, START_TIMEOUT)
    run("slurmctld", "-D", "-i")
    run("slurmd", "-D", "-N", NODE)
    _wait(lambda: _node_idle(slurm), f"node {NODE} to be idle", slurm, START_TIMEOUT)
    # Ready means a job runs to its end: a cluster that queues jobs forever would hang the tests instead.
    job = slurm.command("sbatch", "--parsable", "--job-name=eetrend-ready", "--output=/dev/null", "--wrap=true")
    job = job.strip().split(";")[0]
    _wait(lambda: any(j.get("JobId") == job and j.get("JobState") == "COMPLETED" for j in slurm.finished_jobs()),
          f"test job {job} to complete", slurm, START_TIMEOUT)


def _quiet(slurm: Slurm, *args: str) -> str:
    try:
        return subprocess.run(args, env=slurm.env, capture_output=True, text=True, timeout=COMMAND_TIMEOUT).stdout
    except subprocess.TimeoutExpired:
        return ""


def stop(slurm: Slurm) -> None:
    """Cancel every job and wait until none is left (their steps outlive slurmd), then stop the
    daemons by pid (politely, then by force) and wait for them."""
    if slurm.processes.get("slurmctld") is not None and slurm.processes["slurmctld"].poll() is None:
        _quiet(slurm, "scancel", "--user", str(os.getuid()))
        deadline = time.monotonic() + 30
        while _quiet(slurm, "squeue", "-h", "-o", "%i").strip() and time.monotonic() < deadline:
            time.sleep(0.2)
        _quiet(slurm, "scontrol", "shutdown")
    for name in ("slurmd", "slurmctld", "munged"):
        process = slurm.processes.get(name)
        if process is None:
            continue
        if process.poll() is None:
            process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=15)


def running_slurm(folder: Path, attempts: int = 3) -> Iterator[Slurm]:
    """Start a cluster in ``folder`` (another port on a clash), yield it, stop it."""
    for attempt in range(attempts):
        here = folder / f"try{attempt}"
        here.mkdir()
        slurm = Slurm(folder=here, conf=here / "slurm.conf", jobcomp=here / "log" / "jobcomp.txt")
        try:
            _start(slurm)
            break
        except RuntimeError:
            stop(slurm)
            if attempt == attempts - 1:
                raise
    try:
        yield slurm
    finally:
        stop(slurm)
