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

    p_publish = sub.add_parser("publish", help="write the learner bundle (release notebooks, mytorch_lib, README), leak-scanned")
    p_publish.add_argument("--out", help="bundle folder (default build/learners); may be a clone of the learners' repository")
    p_publish.add_argument("--sync-header", action="store_true",
                           help="only rewrite source/header.ipynb's Colab install source from course.toml")
    p_publish.add_argument("--no-release-check", action="store_true",
                           help="publish even if the committed release/ differs from a fresh generation")

    p_mutate = sub.add_parser("mutate", help="mutate the solutions, autograde each mutant, report the kill ratio")
    from course_tools.quality.mutation import add_arguments as add_mutate_arguments

    add_mutate_arguments(p_mutate)

    from course_tools.grading.class_grading import add_arguments as add_grade_arguments, add_preflight_arguments

    add_grade_arguments(sub.add_parser("grade", help="grade a whole class: preflight, sandboxed parallel autograde, "
                                                     "summary table and CSV"))
    add_preflight_arguments(sub.add_parser("preflight", help="check submissions against the release without grading"))

    from course_tools.term.similarity import add_archive_arguments, add_arguments as add_similarity_arguments

    add_similarity_arguments(sub.add_parser("similarity", help="similarity report of a class (and earlier terms): "
                                                               "pairs to look at, HTML and CSV"))
    add_archive_arguments(sub.add_parser("archive", help="store a class's own code for later similarity reports"))

    from course_tools.term import deadlines, lms

    deadlines.add_deadline_arguments(sub.add_parser("deadline", help="show or set an assignment's due date "
                                                                     "(late penalties follow nbgrader_config.py)"))
    deadlines.add_extension_arguments(sub.add_parser("extension", help="give one learner more time"))
    lms.add_import_arguments(sub.add_parser("lms-import", help="submitted/ from a Canvas or Moodle bulk download "
                                                                "(zip) and a roster"))
    lms.add_export_arguments(sub.add_parser("lms-export", help="gradebook as a Canvas or Moodle grade import CSV"))
    term = {"deadline": deadlines.deadline_main, "extension": deadlines.extension_main,
            "lms-import": lms.import_main, "lms-export": lms.export_main}

    # Course-quality tools with options of their own: everything after the command is theirs.
    quality = {"baselines": ("torch_baselines", "PyTorch notebooks: reference over seeds against weak models"),
               "fashion-data": ("fashion_data", "build or --check the grader's Fashion-MNIST test split"),
               "benchmark-grading": ("benchmark_grading", "plain nbgrader loop, local engine and Dask, side by "
                                                          "side on a synthetic class"),
               "benchmark-similarity": ("benchmark_similarity", "time the similarity report on a synthetic class")}
    for name, (_, summary) in quality.items():
        sub.add_parser(name, help=summary, add_help=False)
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in quality:
        import importlib

        return importlib.import_module(f"course_tools.quality.{quality[argv[0]][0]}").main(argv[1:])

    args = parser.parse_args(argv)
    if args.command in term:
        return term[args.command](args)
    if args.command == "release":
        from course_tools.authoring.release import generate_release

        names = generate_release(names=args.assignments or None)
        print(f"release/ regenerated for: {', '.join(names)}")
        return 0
    if args.command == "demo":
        from course_tools.demo import run_demo

        return run_demo(args.workdir)
    if args.command == "publish":
        from course_tools.authoring.publish import main as publish

        return publish(args.out, sync=args.sync_header, check_release=not args.no_release_check)
    if args.command == "mutate":
        from course_tools.quality.mutation import main as mutate

        return mutate(args)
    if args.command == "grade":
        from course_tools.grading.class_grading import main as grade

        return grade(args)
    if args.command == "preflight":
        from course_tools.grading.class_grading import preflight_main

        return preflight_main(args)
    if args.command == "similarity":
        from course_tools.term.similarity import main as similarity

        return similarity(args)
    if args.command == "archive":
        from course_tools.term.similarity import archive_main

        return archive_main(args)
    return 2


if __name__ == "__main__":
    sys.exit(main())
