"""``snakemake --touch --forceall`` without the touch executor's 0.1 s sleep per job.

workflow/scripts/pull.sh marks a pulled workspace up to date this way: every job's outputs
touched in the DAG's order, and its params / code provenance recorded. Snakemake's touch
executor sleeps 0.1 s before touching each job's outputs, so that alone is ~20 s of idle wall
time for the default's ~200 jobs (17 of the 20 s it took on the tiny run's 170). The sleep buys
nothing here: the jobs are still touched one after another in dependency order, so no output is
older than its inputs, and one as old as an input (the same timestamp tick) counts as up to date
(Snakemake reruns a job only when an input is strictly newer than its outputs).

Usage: ``python -m fillrobust.mark_up_to_date [snakemake options]`` (e.g. ``--cores 1 --quiet``).
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> None:
    """Run ``snakemake --touch --forceall <argv>`` with the touch executor's sleep set to 0;
    exits with Snakemake's status (0 when every job was marked)."""
    from snakemake.cli import main as snakemake_main
    from snakemake.executors import touch

    # A public class attribute of the pinned Snakemake (requirements.lock); were it gone, the
    # touch would only be as slow as plain `snakemake --touch`.
    if hasattr(touch.Executor, "SLEEPING_TIME"):
        touch.Executor.SLEEPING_TIME = 0.0
    args = ["--touch", "--forceall", *(sys.argv[1:] if argv is None else argv)]
    snakemake_main(args)  # exits


if __name__ == "__main__":
    main()
