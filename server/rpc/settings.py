"""Server settings from flags, the environment and a config file, typed by
one definition: the ``rvkvm-server`` argument parser.

Every option ``--some-name`` of the parser can also be given as the
environment variable ``RVKVM_SOME_NAME`` or as the key ``some-name`` (or
``some_name``) of a TOML config file (``--config FILE`` or
``RVKVM_CONFIG``). A flag wins over the environment, which wins over the
file, which wins over the parser's default. Values from the environment
and the file go through the option's own ``type`` and ``choices``, so a bad
value fails as the flag would; booleans (``store_true`` options) accept
true/false, 1/0, yes/no, on/off (a TOML boolean too).

The TLS options are the exception: ``--tls-cert`` is ``RVKVM_SERVER_TLS_CERT``
(and so on), because the client library reads ``RVKVM_TLS_CA``,
``RVKVM_TLS_CERT`` and ``RVKVM_TLS_KEY`` (``rvkvm.client.channels``): a
client's settings must never configure the embedded server it starts.
"""

from __future__ import annotations

import argparse
import os
from typing import Any, Dict, List, Mapping, Optional

import tomllib

ENV_PREFIX = "RVKVM_"
_UNSET = object()
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


# Options whose plain RVKVM_<OPTION> name is a client library variable's.
SERVER_ONLY_PREFIX = ENV_PREFIX + "SERVER_"
_CLIENT_NAMED = ("tls_",)


def env_name(dest: str) -> str:
    """The environment variable of the option stored as ``dest``."""
    if dest.startswith(_CLIENT_NAMED):
        return SERVER_ONLY_PREFIX + dest.upper()
    return ENV_PREFIX + dest.upper()


def _options(parser: argparse.ArgumentParser) -> List[argparse.Action]:
    return [a for a in parser._actions  # noqa: SLF001 (argparse has no public list)
            if a.option_strings and a.dest not in ("help", "config")
            and not isinstance(a, (argparse._HelpAction, argparse._VersionAction))]


def _convert(parser: argparse.ArgumentParser, action: argparse.Action, value: Any,
             where: str) -> Any:
    flag = action.option_strings[-1]
    if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
        if isinstance(value, bool):
            on = value
        elif str(value).strip().lower() in _TRUE:
            on = True
        elif str(value).strip().lower() in _FALSE:
            on = False
        else:
            parser.error(f"{where}: {flag} expects true or false, not {value!r}")
        return on if isinstance(action, argparse._StoreTrueAction) else not on
    if isinstance(action, argparse._AppendAction):
        items = value if isinstance(value, list) else [v for v in str(value).split(",") if v]
        return [_convert_one(parser, action, v, where) for v in items]
    return _convert_one(parser, action, value, where)


def _convert_one(parser: argparse.ArgumentParser, action: argparse.Action, value: Any,
                 where: str) -> Any:
    flag = action.option_strings[-1]
    if action.type is not None and not (isinstance(value, (int, float))
                                        and action.type in (int, float)):
        try:
            value = action.type(str(value))  # type: ignore[misc,operator]
        except (TypeError, ValueError, argparse.ArgumentTypeError) as err:
            parser.error(f"{where}: {flag}: {err}")
    if action.choices is not None and value not in action.choices:
        parser.error(f"{where}: {flag}: {value!r} is not one of "
                     f"{', '.join(map(str, action.choices))}")
    return value


def load_config(path: str) -> Dict[str, Any]:
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as err:
        raise SystemExit(f"rvkvm-server: config file {path}: {err.strerror}") from None
    except tomllib.TOMLDecodeError as err:
        raise SystemExit(f"rvkvm-server: config file {path}: {err}") from None
    return {key.replace("-", "_"): value for key, value in data.items()}


def parse(parser: argparse.ArgumentParser, argv: Optional[List[str]] = None,
          environ: Optional[Mapping[str, str]] = None) -> argparse.Namespace:
    """Parse ``argv`` with ``parser``, filling what no flag gave from
    ``environ`` (default: ``os.environ``) and the config file."""
    environ = os.environ if environ is None else environ
    if not any(a.dest == "config" for a in parser._actions):  # noqa: SLF001
        parser.add_argument("--config", metavar="FILE",
                            help=f"TOML file of settings (keys: the long option names); "
                                 f"also ${ENV_PREFIX}CONFIG. Every option can also be set "
                                 f"as ${ENV_PREFIX}<OPTION>, e.g. {ENV_PREFIX}LISTEN")
    options = _options(parser)
    defaults = {a.dest: a.default for a in options}
    # append actions build on their default, so theirs is None (unset)
    unset = {a.dest: None if isinstance(a, argparse._AppendAction) else _UNSET
             for a in options}
    for action in options:
        action.default = unset[action.dest]
    try:
        args = parser.parse_args(argv)
    finally:
        for action in options:
            action.default = defaults[action.dest]
    config_path = args.config or environ.get(ENV_PREFIX + "CONFIG")
    config = load_config(config_path) if config_path else {}
    known = {a.dest for a in options}
    unknown = set(config) - known
    if unknown:
        parser.error(f"config file {config_path}: unknown settings "
                     f"{', '.join(sorted(unknown))}")
    for action in options:
        if getattr(args, action.dest) is not unset[action.dest]:
            continue
        name = env_name(action.dest)
        if name in environ:
            value = _convert(parser, action, environ[name], name)
        elif action.dest in config:
            value = _convert(parser, action, config[action.dest], f"config file {config_path}")
        else:
            value = defaults[action.dest]
        setattr(args, action.dest, value)
    return args
