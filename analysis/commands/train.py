"""`aejets train`: not implemented yet."""

from analysis.errors import AejetsError


def register(subparsers):
    parser = subparsers.add_parser("train", help="(not implemented yet)")
    parser.set_defaults(func=run)


def run(args):
    raise AejetsError("'aejets train' is not implemented yet")
