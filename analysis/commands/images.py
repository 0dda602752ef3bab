"""`aejets images`: not implemented yet."""

from analysis.errors import AejetsError


def register(subparsers):
    parser = subparsers.add_parser("images", help="(not implemented yet)")
    parser.set_defaults(func=run)


def run(args):
    raise AejetsError("'aejets images' is not implemented yet")
