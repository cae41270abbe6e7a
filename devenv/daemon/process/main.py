"""Entry point of `devenvd`: serve (the default), or manage API tokens on this machine.

devenvd [--listen tcp://127.0.0.1:8765]    serve on the unix socket (and TCP, with tokens)
devenvd token create NAME [--admin] [--reissue]   print a new token once; only its hash is stored
devenvd token list | revoke NAME
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from devenv.errors import DevenvError

if TYPE_CHECKING:
    from devenv.daemon.services.tokens import Tokens


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="devenvd", description="The devenv daemon.")
    parser.add_argument(
        "--listen",
        action="append",
        default=[],
        metavar="tcp://HOST:PORT",
        help="also serve on TCP; every call then needs a token (repeatable)",
    )
    commands = parser.add_subparsers(dest="command")
    commands.add_parser("serve", help="serve the API (the default)")
    token = commands.add_parser("token", help="API tokens for TCP clients")
    token_commands = token.add_subparsers(dest="token_command", required=True)
    create = token_commands.add_parser("create", help="make a token and print it once")
    create.add_argument("name", help="the person it belongs to")
    create.add_argument("--admin", action="store_true", help="may manage access to every workspace")
    create.add_argument(
        "--reissue", action="store_true", help="NAME already holds workspaces or secrets here: the token is theirs"
    )
    token_commands.add_parser("revoke", help="revoke a token at once").add_argument("name")
    token_commands.add_parser("list", help="list token names")
    return parser


def _tokens() -> Tokens:
    from devenv import paths
    from devenv.daemon.services.tokens import Tokens
    from devenv.daemon.store.db import make_engine, migrate, session_factory

    engine = make_engine(paths.database_url())
    migrate(engine)
    return Tokens(session_factory(engine))


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    try:
        if args.command == "token":
            tokens = _tokens()
            if args.token_command == "create":
                print(tokens.create(args.name, admin=args.admin, reissue=args.reissue))
            elif args.token_command == "revoke":
                if not tokens.revoke(args.name):
                    print(f"devenvd: no token named {args.name!r}", file=sys.stderr)
                    sys.exit(1)
            else:
                for name, created, used, admin in tokens.names():
                    role = "\tadmin" if admin else ""
                    print(
                        f"{name}\tcreated {created:%Y-%m-%d %H:%M}\tlast used "
                        f"{used.strftime('%Y-%m-%d %H:%M') if used else 'never'}{role}"
                    )
            return
        from devenv.daemon.process.server import serve

        sys.exit(serve(args.listen))
    except DevenvError as error:
        print(f"devenvd: error ({error.code}): {error.render()}", file=sys.stderr)
        sys.exit(error.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
