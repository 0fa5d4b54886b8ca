"""The ``tinylora exercises`` subcommands: ``export DIR`` and ``grade SUBMISSIONS --out grades.csv``."""
from __future__ import annotations

import argparse

__all__ = ["add_exercises_parser"]


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _export(args) -> int:
    from .export import export_student_edition

    paths = export_student_edition(args.directory, source=args.source)
    print(f"wrote {len(paths)} files to {args.directory}: the exercise notebooks with stubs, no solutions")
    return 0


def _grade(args) -> int:
    from .grader import grade_folder

    grades = grade_folder(args.submissions, args.out, args.feedback, timeout=args.timeout, seed=args.seed,
                          jobs=args.jobs, check_timeout=args.check_timeout)
    for grade in grades:
        print(f"{grade.student}: {grade.total} points ({grade.seconds:.1f} s)")
    print(f"wrote {args.out} and {args.feedback or 'feedback/ beside it'}")
    return 0


def add_exercises_parser(sub) -> None:
    """Register ``exercises export`` and ``exercises grade`` on the top-level subparsers ``sub``."""
    ex = sub.add_parser("exercises", help="classroom exercises: write the student edition, grade submissions")
    tasks = ex.add_subparsers(dest="exercises_command", metavar="TASK", required=True)
    export = tasks.add_parser("export", help="write the exercise notebooks (stubs, no solutions) to DIR")
    export.add_argument("directory", metavar="DIR", help="output folder")
    export.add_argument("--source", default=None, help="notebooks/exercises (default: this checkout's)")
    export.set_defaults(func=_export)
    grade = tasks.add_parser("grade", help="run every submitted notebook with a time limit; write points and "
                                           "feedback", formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    grade.add_argument("submissions", metavar="SUBMISSIONS",
                       help="a folder of <student>.ipynb files or <student>/ folders of notebooks")
    grade.add_argument("--out", default="grades.csv", help="the CSV of points per exercise and total")
    grade.add_argument("--feedback", default=None, help="folder of <student>.md (default: feedback/)")
    grade.add_argument("--timeout", type=float, default=120.0, help="seconds allowed per notebook")
    grade.add_argument("--seed", type=int, default=None, help="seed of the checks, one for every student")
    grade.add_argument("--check-timeout", type=float, default=30.0,
                       help="seconds allowed per check (an endless function costs only its exercise)")
    grade.add_argument("--jobs", type=_positive_int, default=1, help="notebooks graded at the same time")
    grade.set_defaults(func=_grade)
