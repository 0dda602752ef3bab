"""`aejets score`: not implemented yet."""

from analysis.errors import AejetsError


def register(subparsers):
    parser = subparsers.add_parser("score", help="(not implemented yet)")
    parser.set_defaults(func=run)


def run(args):
    raise AejetsError("'aejets score' is not implemented yet")
