"""CLI start-up: medians of interleaved rounds of ``agent-sessions`` commands, per source tree.

    python benchmarks/startup.py [--rounds 10] [--tree NAME=DIR ...] [--bytecode]

A tree is a directory holding an ``agent_sessions`` package, for example an older commit's:
``mkdir before && git archive <commit> agent_sessions | tar -x -C before``. Without ``--tree``
the checkout this script is in is measured. Each round runs every command once per tree, in a
fresh interpreter with ``PYTHONPATH`` set to the tree, the order of the trees alternating from
round to round; a command runs as the console script does (``main()`` of ``agent_sessions.cli``),
from a temporary directory so that no checkout shadows the tree. The database is the demo's file
(``agent-sessions demo --offline``), made once with the first tree.

Python compiles a package without cached bytecode on every start when ``PYTHONDONTWRITEBYTECODE``
is set (as in this project's VM); ``--bytecode`` caches it in a temporary directory first, as an
installed wheel has it.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CLI = "import sys\nfrom agent_sessions.cli import main\nsys.exit(main())\n"
COMMANDS = {
    "python -c pass": ["-c", "pass"],
    "--version": ["-c", CLI, "--version"],
    "ls DB": ["-c", CLI, "ls", "{db}"],
    "show DB demo": ["-c", CLI, "show", "{db}", "demo"],
    "stats DB": ["-c", CLI, "stats", "{db}"],
}


def _run(argv: list[str], env: dict[str, str], cwd: str) -> float:
    started = time.perf_counter()
    done = subprocess.run(  # noqa: S603 - this interpreter on our own commands
        [sys.executable, *argv], env=env, cwd=cwd, capture_output=True, text=True, check=False
    )
    took = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv[2:]) or argv}: exit {done.returncode}\n{done.stderr}")
    return took


def main() -> None:
    """Measure and print a table: median (and fastest) milliseconds per command and tree."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--tree", action="append", default=[], metavar="NAME=DIR")
    parser.add_argument("--bytecode", action="store_true", help="cache bytecode first")
    args = parser.parse_args()
    trees = dict(item.split("=", 1) for item in args.tree) or {
        "this": str(Path(__file__).resolve().parent.parent)
    }
    with tempfile.TemporaryDirectory() as tmp:
        envs = {}
        for name, tree in trees.items():
            env = dict(os.environ, PYTHONPATH=str(Path(tree).resolve()))
            if args.bytecode:
                env.pop("PYTHONDONTWRITEBYTECODE", None)
                env["PYTHONPYCACHEPREFIX"] = str(Path(tmp) / "pycache")
            envs[name] = env
        db = str(Path(tmp) / "demo.db")
        first = envs[next(iter(trees))]
        _run(["-m", "agent_sessions", "demo", "--offline", "--db", db], first, tmp)
        commands = {label: [a.format(db=db) for a in argv] for label, argv in COMMANDS.items()}
        times: dict[tuple[str, str], list[float]] = {}
        for argv in commands.values():  # one unmeasured round: bytecode, page cache
            for env in envs.values():
                _run(argv, env, tmp)
        for number in range(args.rounds):
            order = list(trees) if number % 2 == 0 else list(trees)[::-1]
            for label, argv in commands.items():
                for name in order:
                    times.setdefault((label, name), []).append(_run(argv, envs[name], tmp))
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    print(f"{args.rounds} rounds, load average after: {load}; ms, median (fastest)")
    print("| command | " + " | ".join(trees) + " |")
    print("|---|" + "---:|" * len(trees))
    for label in commands:
        cells = []
        for name in trees:
            runs = times[(label, name)]
            cells.append(f"{statistics.median(runs) * 1000:,.0f} ({min(runs) * 1000:,.0f})")
        print(f"| `{label}` | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
