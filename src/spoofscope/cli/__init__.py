"""The ``spoofscope`` command line: thin sub-commands over the modules, one module per command
group (:mod:`.detect`; :mod:`.explain`; :mod:`.train`: train, adapt, score; :mod:`.evaluate`:
evaluate, calibrate, fuse; :mod:`.serve`: serve, audit; :mod:`.data`: data, demo, models,
export), each owning its parsers and handlers; the shared option types live in :mod:`._common`."""

from __future__ import annotations

import argparse
import logging
import sys

from ..errors import SpoofscopeError
from . import data, detect, evaluate, explain, serve, train
from ._common import CLIError, _Parser
from ._common import load_detector as _build_detector
from .data import _demo_adaptation

__all__ = ["CLIError", "build_parser", "main", "_build_detector", "_demo_adaptation"]

#: modules of the optional extras (pyproject.toml) -> the extra that installs them
EXTRAS = {
    "fastapi": "serve",
    "fastapi_offline": "serve",
    "uvicorn": "serve",
    "prometheus_client": "serve",
    "websockets": "serve",
    "transformers": "ssl",
    "huggingface_hub": "ssl",
    "safetensors": "ssl",
    "ray": "ray",
    "psycopg": "postgres",
    "psycopg_pool": "postgres",
}


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    p = _Parser(
        prog="spoofscope", description="Spoofed-speech countermeasures and ASVspoof evaluation."
    )
    p.add_argument("--version", action="version", version=f"spoofscope {__version__}")
    p.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    p.add_argument(
        "--debug", action="store_true", help="show the traceback of every error, ours too"
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name, help, description=None, parent=sub):
        return parent.add_parser(name, help=help, description=description or help)

    evaluate.add_evaluate(command)
    data.add_data(command)
    detect.add_detect(command)
    explain.add_explain(command)
    evaluate.add_calibrate(command)
    evaluate.add_fuse(command)
    data.add_export(command)
    train.add_train(command)
    train.add_adapt(command)
    train.add_score(command)
    data.add_demo_data(command)
    data.add_demo(command)
    serve.add_serve(command)
    data.add_models(command)
    serve.add_audit(command)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # key=value overrides may come after the options (train, demo)
    if extra:
        if hasattr(args, "overrides") and all("=" in e and not e.startswith("-") for e in extra):
            args.overrides = list(args.overrides or []) + extra
        else:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
    chatty = args.command in ("train", "demo", "adapt")
    logging.basicConfig(
        force=True,
        level=logging.DEBUG if args.verbose else logging.INFO if chatty else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        return args.func(args)
    except BrokenPipeError:
        # the reader went away (spoofscope models | head): not an error of ours. Point stdout
        # at /dev/null so that the interpreter's final flush does not complain either.
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except ModuleNotFoundError as e:
        # a feature of an extra the base install leaves out: name the extra
        extra = EXTRAS.get((e.name or "").partition(".")[0])
        if extra is None or args.debug:
            raise
        print(
            f"spoofscope {args.command}: error: this needs {e.name}, which the base install "
            f"leaves out: pip install 'spoofscope[{extra}]'",
            file=sys.stderr,
        )
        return 2
    except (SpoofscopeError, OSError) as e:
        # the user's error, named with its fix: one line. Anything else is a bug and keeps
        # its traceback.
        if args.debug:
            raise
        msg = " ".join(str(e).split())
        print(f"spoofscope {args.command}: error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
