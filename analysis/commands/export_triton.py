"""`aejets export-triton`: not implemented yet."""

from analysis.errors import AejetsError


def register(subparsers):
    parser = subparsers.add_parser("export-triton", help="(not implemented yet)")
    parser.set_defaults(func=run)


def run(args):
    raise AejetsError("'aejets export-triton' is not implemented yet")
