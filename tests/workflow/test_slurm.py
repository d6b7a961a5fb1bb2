"""The micro pipeline through a real single-node SLURM on localhost (Debian's munge, slurmctld, slurmd).

The daemons run in the foreground as this test's children, from a throwaway
configuration (own munge key and socket, free ports, no cgroups, no
accounting). The node offers two GPUs as SLURM generic resources backed by
stand-in character devices (the major/minor of /dev/null): SLURM schedules and
binds them exactly as it would real ones (``--gpus``, ``CUDA_VISIBLE_DEVICES``),
while torch, finding no CUDA driver, computes on the CPU, so the outputs can be
compared with a local run's byte for byte. Where such a device file cannot be
made, the node has no GPUs and the run says ``device: cpu`` (every rule then
declares ``gpu=0``), and the test warns that it checked no GPU request.

Snakemake runs with the project's ``workflow/profiles/slurm`` unchanged; the
command line only adds what a one-node test cluster without accounting needs
(status from ``squeue``, a short first status check, no account guessing, no
retries).
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.workflow.servers import ensure_packages, free_port
from tests.workflow.workspace import ROOT, env, make_workspace, snakemake

pytestmark = pytest.mark.slow

PACKAGES = ("munge", "slurmctld", "slurmd", "slurm-client")
DAEMONS = {"munged": Path("/usr/sbin/munged"), "slurmctld": Path("/usr/sbin/slurmctld"),
           "slurmd": Path("/usr/sbin/slurmd")}
CLIENTS = ("sbatch", "squeue", "sinfo", "scontrol")
# Where SLURM's commands look when SLURM_CONF is unset: the jobstep plugin unsets
# SLURM_* inside a job before its srun, so the test's configuration is linked here.
SYSTEM_CONF = Path("/etc/slurm/slurm.conf")
TARGET = "results/tables/filling_per_container.csv"
# The smallest study with a table: one split, one strategy (synthesize, crop, split, train, table).
STUDY = {"study": {"splits": ["S1"], "strategies": ["ST"]}}
OUTPUTS = ("results/tables/filling_per_container.csv", "results/tables/filling_per_container.md",
           "results/tables/filling_per_container.tex", "models/S1/ST/seed0/model.safetensors")
PROFILE = yaml.safe_load((ROOT / "workflow/profiles/slurm/config.yaml").read_text())


def slurm_missing() -> list[str]:
    """The daemons and client commands not on this machine."""
    return [n for n, p in DAEMONS.items() if not p.exists()] + [n for n in CLIENTS if not shutil.which(n)]


def ensure_slurm() -> str | None:
    """Install Debian's SLURM and munge when absent (root only); a reason to skip, or None."""
    return ensure_packages(PACKAGES, slurm_missing)


def memory_mb() -> int:
    """This machine's memory in MB (the node's RealMemory, a little under what slurmd measures)."""
    kb = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
              if line.startswith("MemTotal:"))
    return int(kb / 1024 * 0.95)


def fake_gpus(root: Path, count: int) -> list[Path]:
    """``count`` character devices standing in for GPUs (empty where mknod is not allowed)."""
    paths = [root / f"nvidia{i}" for i in range(count)]
    try:
        for path in paths:
            os.mknod(path, 0o600 | stat.S_IFCHR, os.makedev(1, 3))
    except OSError:
        return []
    return paths


class SlurmCluster:
    """munged, slurmctld and slurmd on 127.0.0.1 with one node of this machine's CPUs."""

    def __init__(self, root: Path) -> None:
        self.root, self.procs = root, []
        self.gpus = fake_gpus(root, 2)
        self.conf = root / "slurm.conf"
        self.write_config()
        SYSTEM_CONF.parent.mkdir(parents=True, exist_ok=True)
        SYSTEM_CONF.symlink_to(self.conf)
        key = root / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o600)
        self.start("munged", "-F", "--force", f"--key-file={key}", f"--socket={root / 'munge.socket'}",
                   f"--pid-file={root / 'munged.pid'}", f"--log-file={root / 'munged.log'}",
                   f"--seed-file={root / 'munge.seed'}")
        self.wait(lambda: (root / "munge.socket").exists(), "munged's socket")
        self.start("slurmctld", "-D", "-c", "-f", str(self.conf))
        self.start("slurmd", "-D", "-N", "localhost", "-f", str(self.conf))
        self.wait(lambda: self.node_state() == "idle", "the node to be idle in sinfo")

    def write_config(self) -> None:
        root = self.root
        for name in ("state", "spool"):
            (root / name).mkdir()
        gres = f" Gres=gpu:{len(self.gpus)}" if self.gpus else ""
        lines = [
            "ClusterName=fillrobust", "SlurmctldHost=localhost(127.0.0.1)",
            f"SlurmctldPort={free_port()}", f"SlurmdPort={free_port()}", "SlurmUser=root", "SlurmdUser=root",
            "AuthType=auth/munge", "CredType=cred/munge", f"AuthInfo=socket={root / 'munge.socket'}",
            f"StateSaveLocation={root / 'state'}", f"SlurmdSpoolDir={root / 'spool'}",
            f"SlurmctldPidFile={root / 'slurmctld.pid'}", f"SlurmdPidFile={root / 'slurmd.pid'}",
            f"SlurmctldLogFile={root / 'slurmctld.log'}", f"SlurmdLogFile={root / 'slurmd.log'}",
            # no cgroups, no accounting: process tracking by /proc, jobs stay in slurmctld for 10 min
            "ProctrackType=proctrack/linuxproc", "TaskPlugin=task/none", "JobAcctGatherType=jobacct_gather/none",
            "AccountingStorageType=accounting_storage/none", "JobCompType=jobcomp/none", "MpiDefault=none",
            "SelectType=select/cons_tres", "SelectTypeParameters=CR_CPU", "ReturnToService=2", "MinJobAge=600",
            "GresTypes=gpu",
            f"NodeName=localhost NodeAddr=127.0.0.1 CPUs={os.cpu_count()} RealMemory={memory_mb()}{gres}"
            " State=UNKNOWN",
            "PartitionName=test Nodes=localhost Default=YES MaxTime=INFINITE State=UP",
        ]
        self.conf.write_text("\n".join(lines) + "\n")
        files = f"NodeName=localhost Name=gpu File={root}/nvidia[0-{len(self.gpus) - 1}]\n" if self.gpus else ""
        (root / "gres.conf").write_text("AutoDetect=off\n" + files)

    def env(self) -> dict[str, str]:
        return dict(env(), SLURM_CONF=str(self.conf))

    def start(self, daemon: str, *args: str) -> None:
        """Start ``daemon`` in the foreground, its terminal output to ``<daemon>.out`` (a pipe could fill)."""
        with open(self.root / f"{daemon}.out", "w") as out:
            self.procs.append(subprocess.Popen([str(DAEMONS[daemon]), *args], stdout=out,
                                               stderr=subprocess.STDOUT, env=self.env()))

    def wait(self, ready, what: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            dead = [p for p in self.procs if p.poll() is not None]
            if dead:
                break
            if ready():
                return
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"SLURM did not start (waiting for {what}): {self.logs()}")

    def node_state(self) -> str:
        out = subprocess.run(["sinfo", "-h", "-N", "-o", "%T"], capture_output=True, text=True, env=self.env())
        return out.stdout.strip()

    def logs(self) -> str:
        tails = [f"{p.args[0]} exited {p.returncode}" for p in self.procs if p.poll() is not None]
        for name in ("munged.out", "slurmctld.out", "slurmd.out", "munged.log", "slurmctld.log", "slurmd.log"):
            path = self.root / name
            if path.exists():
                tails.append(f"{name}: {path.read_text()[-800:]}")
        return "\n".join(tails)

    def cli(self, *args: str) -> str:
        return subprocess.run(list(args), capture_output=True, text=True, env=self.env(), check=True,
                              timeout=60).stdout

    def jobs(self) -> dict[str, dict[str, str]]:
        """Job id -> its fields in ``scontrol -d -o show job`` (finished jobs included)."""
        out = {}
        for line in self.cli("scontrol", "-d", "-o", "show", "job").splitlines():
            fields = dict(re.findall(r"(\w+)=(\S*)", line))
            if "JobId" in fields:
                out[fields["JobId"]] = fields
        return out

    def stop(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        if SYSTEM_CONF.is_symlink() and SYSTEM_CONF.readlink() == self.conf:
            SYSTEM_CONF.unlink()


# One test uses the cluster (pytest-xdist may put two tests of a module on two
# workers, and there is one /etc/slurm/slurm.conf), so the fixture is per test.
@pytest.fixture
def slurm(tmp_path_factory) -> Iterator[SlurmCluster]:
    if os.geteuid() != 0:
        pytest.skip("needs root: slurmd launches jobs as their user, and the test links /etc/slurm/slurm.conf")
    reason = ensure_slurm()
    if reason:
        pytest.skip(reason)
    if SYSTEM_CONF.is_symlink() and not SYSTEM_CONF.exists() and "pytest-of-" in str(SYSTEM_CONF.readlink()):
        SYSTEM_CONF.unlink()  # left by a run of this test that was killed before its teardown
    if SYSTEM_CONF.exists() or SYSTEM_CONF.is_symlink():
        pytest.skip(f"{SYSTEM_CONF} exists (a configured SLURM on this machine); the test does not replace it")
    try:
        cluster = SlurmCluster(tmp_path_factory.mktemp("slurm"))
    except RuntimeError as err:
        pytest.skip(str(err))
    yield cluster
    cluster.stop()


def slurm_snakemake(cluster: SlurmCluster, ws: Path) -> subprocess.CompletedProcess:
    """The project's SLURM profile as it is, plus what a one-node cluster without accounting needs."""
    return subprocess.run(
        [sys.executable, "-m", "snakemake", TARGET, "--profile", "workflow/profiles/slurm", "--jobs", "2",
         "--retries", "0", "--latency-wait", "5", "--slurm-status-command", "squeue",
         "--slurm-init-seconds-before-status-checks", "1", "--slurm-no-account"],
        cwd=ws, env=cluster.env(), capture_output=True, text=True, timeout=900)


def job_logs(ws: Path) -> str:
    """The SLURM logs the plugin kept (those of failed jobs)."""
    return "\n".join(f"{p}: {p.read_text()[-1500:]}" for p in sorted(ws.glob(".snakemake/slurm_logs/**/*.log")))


def rule_of(job: dict[str, str]) -> str:
    """The rule a job ran (the plugin's comment is rule_<name>[_wildcards_...])."""
    return re.sub(r"_wildcards_.*$", "", job.get("Comment", "")).removeprefix("rule_")


@pytest.mark.starts_first
def test_slurm_runs_the_micro_pipeline_like_a_local_run(slurm, tmp_path):
    check_micro_pipeline(slurm, tmp_path)
    if not slurm.gpus:
        warnings.warn("SLURM test ran without GPUs (mknod not allowed): device: cpu, no GPU request checked",
                      stacklevel=1)
    elif (os.cpu_count() or 1) < 2:
        warnings.warn("SLURM test: one CPU, two GPU jobs cannot run at once; distinct devices not checked",
                      stacklevel=1)
    else:
        check_concurrent_gpu_jobs_get_distinct_devices(slurm, tmp_path)


def check_micro_pipeline(slurm: SlurmCluster, tmp_path: Path) -> None:
    """The micro pipeline through the profile: same bytes as a local run, each job's request from its rule."""
    study = STUDY if slurm.gpus else {**STUDY, "device": "cpu"}
    on_slurm = make_workspace(tmp_path / "slurm", study)
    local = make_workspace(tmp_path / "local", study)
    before = set(slurm.jobs())
    local_run = subprocess.Popen([sys.executable, "-m", "snakemake", "--cores", "1", TARGET], cwd=local,
                                 env=env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    done = slurm_snakemake(slurm, on_slurm)
    local_out = local_run.communicate(timeout=900)[0]
    assert done.returncode == 0, f"{done.stderr[-6000:]}\n{job_logs(on_slurm)}\n{slurm.logs()}"
    assert local_run.returncode == 0, local_out[-4000:]
    for name in OUTPUTS:
        assert (on_slurm / name).read_bytes() == (local / name).read_bytes(), name

    jobs = {rule_of(j): j for jid, j in slurm.jobs().items() if jid not in before}
    assert set(jobs) == {"synthesize_ccm", "crop_ccm", "split", "train", "table_filling"}, jobs.keys()
    defaults = PROFILE["default-resources"]
    for rule, job in jobs.items():
        assert job["JobState"] == "COMPLETED", (rule, job["JobState"])
        assert job["NumCPUs"] == "1", rule  # threads: 1 in tests/data/tiny.yaml
        assert job["TimeLimit"] == f"{defaults['runtime'] // 60:02d}:00:00", rule  # runtime (min)
        # only train declares mem_mb (3000); the others get the profile's default
        assert job["MinMemoryNode"] == ("3000M" if rule == "train" else f"{defaults['mem_mb']}M"), rule
        # a GPU exactly for the rule that trains (gpu=1 from params' device: auto), none for the others
        wants_gpu = rule == "train" and bool(slurm.gpus)
        assert ("gpu:1" in job.get("TresPerJob", "")) == wants_gpu, (rule, job.get("TresPerJob"))
        assert job.get("JOB_GRES", "").startswith("gpu:1") == wants_gpu, (rule, job.get("JOB_GRES"))


def check_concurrent_gpu_jobs_get_distinct_devices(slurm: SlurmCluster, tmp_path: Path) -> None:
    """Two one-GPU jobs at once see different CUDA_VISIBLE_DEVICES: each job's cuda:0 is its own GPU."""
    ids = [slurm.cli("sbatch", "--parsable", "--gpus=1", "-o", str(tmp_path / f"job{i}.out"), "--wrap",
                     "sleep 3; echo $CUDA_VISIBLE_DEVICES").strip() for i in range(2)]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and any(slurm.jobs()[i]["JobState"] != "COMPLETED" for i in ids):
        time.sleep(0.5)
    jobs = slurm.jobs()
    assert [jobs[i]["JobState"] for i in ids] == ["COMPLETED", "COMPLETED"]
    seen = {(tmp_path / f"job{i}.out").read_text().strip() for i in range(2)}
    assert seen == {"0", "1"}, seen


def dry_run_jobs(ws: Path, *args: str) -> list[tuple[str, dict[str, str], str]]:
    """(rule, resources, shell command) of every job of the whole DAG, planned through the SLURM profile."""
    out = snakemake(ws, "-n", "-p", "--forceall", "--profile", "workflow/profiles/slurm", *args).stdout
    jobs = []
    for block in out.split("\nrule ")[1:]:
        resources = re.search(r"^\s+resources: (.*)$", block, re.MULTILINE).group(1)
        shell = re.search(r"^Shell command: (.*)$", block, re.MULTILINE)
        jobs.append((block.split(":", 1)[0].strip(), dict(kv.split("=", 1) for kv in resources.split(", ")),
                     shell.group(1) if shell else ""))
    return jobs


def test_every_job_asks_for_a_gpu_exactly_when_it_runs_a_model_on_the_device(tmp_path):
    """Over the whole tiny DAG (no cluster needed): the profile's request for each job comes from its rule."""
    ws = make_workspace(tmp_path / "ws")
    jobs = dry_run_jobs(ws)
    gpu_rules = {rule for rule, res, _ in jobs if res.get("gpu") == "1"}
    assert {"train", "train_source", "evaluate_threats", "evaluate_corruptions", "margins"} <= gpu_rules
    assert {"synthesize_ccm", "split", "table_filling"}.isdisjoint(gpu_rules)
    assert {"synthesize_ccm", "split", "table_filling"} <= {rule for rule, _, _ in jobs}
    for rule, res, shell in jobs:
        assert (res.get("gpu") == "1") == ("--device" in shell), (rule, res)  # trains or attacks
        assert res["runtime"] == str(PROFILE["default-resources"]["runtime"]), rule
        # mem_mb: the rule's own (3000 for the trainings), else the profile's default
        mem = "3000" if rule in ("train", "train_source", "train_variant", "train_topgap") else "4000"
        assert res["mem_mb"] == mem, (rule, res["mem_mb"])
    # device: cpu in params: no job asks for a GPU
    assert all(res.get("gpu", "0") == "0" for _, res, _ in dry_run_jobs(ws, "--config", "device=cpu"))
