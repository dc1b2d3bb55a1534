"""Command line of the instructor tooling: ``python -m course_tools <command>``."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m course_tools", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p_release = sub.add_parser("release", help="regenerate release/ from source/ (all assignments)")
    p_release.add_argument("assignments", nargs="*", help="only these assignments (default: all)")

    p_demo = sub.add_parser("demo", help="release, then autograde the bundled example submissions")
    p_demo.add_argument("--workdir", default="build/demo", help="course folder for the demo (default build/demo)")

    args = parser.parse_args(argv)
    if args.command == "release":
        from course_tools.release import generate_release

        names = generate_release(names=args.assignments or None)
        print(f"release/ regenerated for: {', '.join(names)}")
        return 0
    if args.command == "demo":
        from course_tools.demo import run_demo

        return run_demo(args.workdir)
    return 2


if __name__ == "__main__":
    sys.exit(main())
