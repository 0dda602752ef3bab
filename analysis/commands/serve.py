"""`aejets serve`: not implemented yet."""

from analysis.errors import AejetsError


def register(subparsers):
    parser = subparsers.add_parser("serve", help="(not implemented yet)")
    parser.set_defaults(func=run)


def run(args):
    raise AejetsError("'aejets serve' is not implemented yet")
