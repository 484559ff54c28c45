r"""`python -m nas_jax.analysis <name> --workdir W [options]`; `--help` after a name lists
its options. Bad input (an unknown analysis or option, a folder that is not a workdir, a
workdir without the files the analysis needs) ends with one `error:` line and exit status
2, before anything is written."""

from __future__ import annotations

import argparse
import sys

from nas_jax.reporting import quiet_xla_logs

quiet_xla_logs()


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, not argparse's usage block
        print(f"error: {message}", file=sys.stderr)
        sys.exit(2)


def _usage(names) -> str:
    return ("usage: python -m nas_jax.analysis NAME --workdir W [options]\n"
            f"analyses: {', '.join(names)}")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    from nas_jax import analysis
    from nas_jax.registry import UnknownNameError
    from nas_jax.reporting import setup_logging

    args = list(sys.argv[1:] if argv is None else argv)
    names = analysis.ANALYSES.names()
    if not args or args[0] in ("-h", "--help"):
        print(_usage(names), file=sys.stdout if args else sys.stderr)
        return 0 if args else 2
    try:
        entry = analysis.ANALYSES.get(args[0])
    except UnknownNameError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    parser = _Parser(prog=f"python -m nas_jax.analysis {entry.name}",
                     description=entry.description)  # fmt: skip
    parser.add_argument("--workdir", required=True, help="a finished run's workdir")
    for o in entry.options:
        parser.add_argument(f"--{o.name}", type=o.type, default=o.default, help=o.help,
                            choices=o.choices, nargs=o.nargs)  # fmt: skip
    flags = vars(parser.parse_args(args[1:]))
    workdir = flags.pop("workdir")
    setup_logging()
    try:
        out, paths = analysis.run(entry.name, workdir, **flags)
    except analysis.AnalysisError as e:
        print(f"error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    for line in out.lines:
        print(line)
    for path in paths:
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
