"""YAML configuration files for every script: ``--config FILE.yaml`` sets the parser's defaults.

A config file is a YAML mapping from flag names to values::

    # Monodepth2 mono 640x192
    height: 192
    width: 640
    frame_ids: [0, -1, 1]
    disparity_smoothness: 0.001
    automask: true

Keys are the flags without their dashes (``learning_rate``, ``model_name``, ``no_ssim``) or their
argparse destination (``img_ext``, ``exp_name``); ``--learning_rate`` and ``learning-rate`` are
accepted too. Each value goes through the flag's own ``type``, ``choices``, ``nargs`` and action,
so a value is checked exactly as the same value typed on the command line; switches
(``--use_stereo``, ``--flip/--no-flip``) take ``true`` or ``false``. The file only changes
defaults: anything given on the command line wins, whatever its position relative to ``--config``.

Only `yaml.safe_load` reads the files (plain data; a file we read never constructs objects or runs
code). Training runs write their effective options back as ``config.yaml`` (`write_config_yaml`),
so ``train.py --config <run>/config.yaml`` repeats a run. Nothing here imports torch.

The flags are looked up through argparse's long-stable internals (``_option_string_actions``,
``_actions``, ``_registry_get``, ``_mutually_exclusive_groups``): that is what lets a file value take
exactly the path of the same command-line word, including custom actions (``--scales``).
"""

from __future__ import annotations

import argparse
import difflib
import math
import os
import sys
from pathlib import Path
from typing import Any, Mapping, Sequence

CONFIG_FLAG = "--config"
CONFIG_DEST = "config"
# Options a run records in opt.json but not in config.yaml: they say how this invocation treated
# the run folder (or which process it was), not what the run computes; repeating them would make
# the copy resume, overwrite or pretend to be a launcher's rank.
NOT_REPEATED_OPTIONS = (CONFIG_DEST, "overwrite", "resume", "force_resume", "local_rank")

_TYPE_NAMES = {int: "an integer", float: "a number", str: "text"}


class ConfigError(ValueError):
    """A config file that cannot be read or has a key or value no flag accepts (the message says which)."""


def add_config_option(parser: argparse.ArgumentParser) -> None:
    """Add ``--config FILE.yaml`` to ``parser`` (once; a second call changes nothing)."""
    if CONFIG_FLAG in parser._option_string_actions:
        return
    parser.add_argument(CONFIG_FLAG, dest=CONFIG_DEST, default=None, metavar="FILE.yaml",
                        help="read default values for the flags from this YAML file (keys are flag names, "
                             "e.g. 'learning_rate: 1.0e-4'); flags on the command line override it. "
                             "The recipes in configs/ are examples")


def parse_args_with_config(parser: argparse.ArgumentParser,
                           argv: Sequence[str] | None = None) -> argparse.Namespace:
    """``parser.parse_args(argv)`` with ``--config FILE.yaml`` supplying defaults.

    Adds ``--config`` to ``parser`` if missing, reads the file it names (found before the full parse,
    ``@file`` arguments included), turns every key into defaults through the matching flag's
    action, then parses ``argv`` as usual so that the command line overrides the file. A required
    flag set by the file counts as given. ``config`` is removed from the result: the options are
    the values, wherever they came from (opt.json stays identical to the equivalent command line).

    Exits with a usage error naming the file, the key and the fix when the file is missing,
    unreadable, empty, not a mapping, or has an unknown key or an invalid value.
    """
    add_config_option(parser)
    argv = list(sys.argv[1:] if argv is None else argv)
    # A parser that knows --config alone finds it; abbreviations are left to the full parse,
    # which must then agree (checked below), so a file is never silently skipped.
    finder = argparse.ArgumentParser(add_help=False, allow_abbrev=False,
                                     fromfile_prefix_chars=parser.fromfile_prefix_chars)
    finder.add_argument(CONFIG_FLAG, dest=CONFIG_DEST, action="append", default=[])
    paths = finder.parse_known_args(argv)[0].config
    if len(paths) > 1:
        parser.error(f"{CONFIG_FLAG} is given {len(paths)} times ({', '.join(paths)}); give one file, and single "
                     "flags on the command line to change it")
    path = paths[0] if paths else None
    if path is not None:
        try:
            apply_config(parser, load_config_file(path), f"{CONFIG_FLAG} {path}")
        except ConfigError as err:
            parser.error(str(err))
    opts = parser.parse_args(argv)
    if getattr(opts, CONFIG_DEST, None) != path:
        parser.error(f"write {CONFIG_FLAG} in full (it was abbreviated, so {opts.config} was not read)")
    if hasattr(opts, CONFIG_DEST):
        delattr(opts, CONFIG_DEST)
    return opts


def load_config_file(path: str | os.PathLike) -> dict:
    """The mapping in YAML file ``path``, read with `yaml.safe_load` (plain data only).

    Raises:
        ConfigError: the file is missing or unreadable, is not valid YAML, is empty, or does not hold
            a mapping of flag names to values; the message names the file and the fix.
    """
    import yaml

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{CONFIG_FLAG} {path}: no such file; give the path of a YAML file "
                          "(the recipes are in configs/)") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{CONFIG_FLAG} {path}: cannot be read ({err}); give a readable UTF-8 YAML file") from None
    try:
        data = yaml.safe_load(text)
        # safe_load keeps the last of two equal keys without a word; the node tree (composed, never
        # constructed) still has both.
        repeated = _repeated_keys(yaml.compose(text, Loader=yaml.SafeLoader)) if isinstance(data, dict) else []
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or " ".join(str(err).split())
        raise ConfigError(f"{CONFIG_FLAG} {path}: not valid YAML{where} ({problem}); write one 'flag_name: value' "
                          "per line, lists as [a, b] (only plain values: no tags such as !!python/...)") from None
    if data is None:
        raise ConfigError(f"{CONFIG_FLAG} {path}: the file is empty; write one 'flag_name: value' per line "
                          "(e.g. 'learning_rate: 1.0e-4'), or drop --config")
    if not isinstance(data, dict):
        raise ConfigError(f"{CONFIG_FLAG} {path}: holds a {_yaml_kind(data)}, not a mapping of flag names to values; "
                          "write one 'flag_name: value' per line (e.g. 'learning_rate: 1.0e-4')")
    if repeated:
        raise ConfigError(f"{CONFIG_FLAG} {path}: " + "; ".join(repeated) + "; keep one of each")
    return data


def _repeated_keys(node) -> list[str]:
    """'key' on lines a and b, for every key given twice in the top-level mapping ``node``."""
    first_line: dict[str, int] = {}
    repeated = []
    for key_node, _ in node.value:
        line = key_node.start_mark.line + 1
        if key_node.value in first_line:
            repeated.append(f"{key_node.value!r} is given twice (lines {first_line[key_node.value]} and {line})")
        first_line.setdefault(key_node.value, line)
    return repeated


def apply_config(parser: argparse.ArgumentParser, config: Mapping[str, Any], source: str | os.PathLike) -> None:
    """Make the values in ``config`` the defaults of ``parser``'s flags.

    Every value is checked and converted exactly as on the command line (type, choices, nargs,
    the action itself), so the parsed options are the same as with the equivalent flags.

    Args:
        parser: the script's parser (changed in place: defaults, and ``required`` for flags set here).
        config: flag name (or argparse destination) -> YAML value.
        source: where the values come from, for messages (e.g. ``--config path.yaml``).

    Raises:
        ConfigError: a key no flag has (naming the closest flag), a value of the wrong form (naming
            the form expected), or two keys for the same option; nothing is changed then.
    """
    defaults: dict[str, Any] = {}
    key_of_dest: dict[str, str] = {}
    for key, value in config.items():
        action, option_string = _find_action(parser, key, source)
        scratch = argparse.Namespace()
        _run_action(parser, action, option_string, key, value, source, scratch)
        for dest, result in vars(scratch).items():
            if dest in key_of_dest:
                raise ConfigError(f"{source}: {key!r} and {key_of_dest[dest]!r} both set the same option "
                                  f"({dest}); keep one")
            key_of_dest[dest] = str(key)
            defaults[dest] = result
    parser.set_defaults(**defaults)
    for action in parser._actions:
        if action.dest in defaults and action.option_strings:  # a required flag the file gave a value
            action.required = False
    for group in parser._mutually_exclusive_groups:
        if group.required and any(a.dest in defaults for a in group._group_actions):
            group.required = False


def _find_action(parser: argparse.ArgumentParser, key: Any, source) -> tuple[argparse.Action, str | None]:
    """The flag a config key names, and the option string it stands for (None: named by destination)."""
    if not isinstance(key, str):
        raise ConfigError(f"{source}: the key {key!r} is not a flag name; write e.g. 'learning_rate: 1.0e-4'")
    name = key.lstrip("-")
    options = parser._option_string_actions
    for candidate in (name, name.replace("-", "_"), name.replace("_", "-")):
        for option_string in ("--" + candidate, "-" + candidate):
            if option_string in options:
                action = options[option_string]
                if isinstance(action, argparse._HelpAction) or action.dest == CONFIG_DEST:
                    raise ConfigError(f"{source}: {key!r} cannot be set in a config file "
                                      + ("(config files do not include other files)"
                                         if action.dest == CONFIG_DEST else "") + "; remove it")
                return action, option_string
    by_dest = [a for a in parser._actions if a.dest in (name, name.replace("-", "_"))
               and not isinstance(a, argparse._HelpAction)]
    if by_dest:
        # Several flags may share a destination (--jpg/--png store constants in img_ext): the one
        # taking a value if any, else the value picks the constant (see _run_action).
        takes_value = [a for a in by_dest if a.nargs != 0]
        if not takes_value and any(not a.option_strings for a in by_dest):
            takes_value = [a for a in by_dest if not a.option_strings]
        return (takes_value[0], None) if takes_value else (by_dest[0], None)
    flags = sorted({s.lstrip("-") for s in options if s.startswith("--")} - {"help", CONFIG_DEST})
    close = difflib.get_close_matches(name, flags, n=1)
    hint = f"did you mean '{close[0]}' (--{close[0]})?" if close else "see --help for the flags"
    raise ConfigError(f"{source}: unknown key {key!r}: no flag --{name}; {hint}")


def _run_action(parser, action: argparse.Action, option_string: str | None, key, value, source,
                namespace: argparse.Namespace) -> None:
    """Apply ``value`` to ``namespace`` through ``action``, as argparse would for the command line."""
    where = f"{source}: {key}:"
    proxy = _RaisingParser(parser, where)
    if value is None:
        # null keeps the flag's default (a run's config.yaml records unset flags as null); a flag
        # whose default is a real value has no command-line spelling for "nothing".
        if action.default is None:
            return
        raise ConfigError(f"{where} null is not a value of {_flag(action, option_string)}; give "
                          f"{_expected_form(action)} or remove the key (default {action.default!r})")
    if action.nargs == 0:
        if option_string is None:
            _apply_constant(parser, action, value, where, namespace)
            return
        if not isinstance(value, bool):
            raise ConfigError(f"{where} {value!r} is not a switch value; {_flag(action, option_string)} takes "
                              "true or false")
        if isinstance(action, argparse.BooleanOptionalAction):
            positive = next(s for s in action.option_strings if not s.startswith("--no-"))
            negative = next(s for s in action.option_strings if s.startswith("--no-"))
            named_negative = option_string.startswith("--no-")  # 'no-flip: true' is --no-flip
            action(proxy, namespace, None, positive if value != named_negative else negative)
        elif value:
            action(proxy, namespace, [], option_string)
        # false for a plain switch means "not given": the default stands.
        return
    strings = _as_strings(action, option_string, value, where)
    converted = [_convert(parser, action, option_string, s, value, where) for s in strings]
    if action.nargs is None or action.nargs == argparse.OPTIONAL:
        argument = converted[0]
    else:
        argument = converted
    action(proxy, namespace, argument, option_string or (action.option_strings or [None])[0])


def _apply_constant(parser, action, value, where, namespace) -> None:
    """A key naming a destination shared by constant-storing flags: ``img_ext: .jpg`` is --jpg."""
    constants = {a.const: a for a in parser._actions if a.dest == action.dest and a.nargs == 0}
    # Compared with their types too: YAML's 1 must not pass for the constant True.
    if any(value == const and type(value) is type(const) for const in constants):
        setattr(namespace, action.dest, value)
        return
    spelled = ", ".join(f"{c!r} ({constants[c].option_strings[0]})" for c in constants)
    raise ConfigError(f"{where} {value!r} is not one of the values its flags store: {spelled}")


def _as_strings(action, option_string, value, where) -> list[str]:
    """``value`` as the command-line words it stands for, its count checked against ``nargs``."""
    nargs = action.nargs
    if isinstance(value, (list, tuple)):
        if nargs in (None, argparse.OPTIONAL):
            raise ConfigError(f"{where} {_short(value)} is a list; {_flag(action, option_string)} takes one value, "
                              f"{_expected_form(action)}")
        items = list(value)
    elif isinstance(value, dict):
        raise ConfigError(f"{where} {_short(value)} is a mapping; {_flag(action, option_string)} takes "
                          f"{_expected_form(action)}")
    else:
        items = [value]
    if isinstance(nargs, int) and len(items) != nargs:
        raise ConfigError(f"{where} {_short(value)} has {len(items)} value(s); {_flag(action, option_string)} "
                          f"takes {_expected_form(action)}")
    if nargs == argparse.ONE_OR_MORE and not items:
        raise ConfigError(f"{where} the list is empty; {_flag(action, option_string)} takes {_expected_form(action)}")
    return [_word(action, option_string, item, where) for item in items]


def _word(action, option_string, item, where) -> str:
    """One YAML scalar as the word a user would type; YAML's own types stand in for nothing else."""
    if isinstance(item, bool):
        # YAML 1.1 reads yes/no/on/off as booleans: in a value flag that is a surprise, never intended.
        raise ConfigError(f"{where} the value is a YAML boolean ({str(item).lower()}; YAML also reads yes, no, on "
                          f"and off so), but {_flag(action, option_string)} takes {_expected_form(action)}; quote "
                          "it (e.g. 'yes') if you mean the text")
    if isinstance(item, (list, tuple, dict)):
        raise ConfigError(f"{where} {_short(item)} is nested; {_flag(action, option_string)} takes "
                          f"{_expected_form(action)}")
    if item is None:
        raise ConfigError(f"{where} a list holds null; {_flag(action, option_string)} takes {_expected_form(action)}")
    if isinstance(item, float):
        return repr(item) if math.isfinite(item) else str(item)  # repr round-trips exactly
    return str(item)


def _convert(parser, action, option_string, word: str, value, where) -> Any:
    """``word`` through the action's type and choices, as argparse converts a command-line word."""
    convert = parser._registry_get("type", action.type, action.type)  # None -> the identity, as argparse does
    try:
        result = convert(word)
    except (argparse.ArgumentTypeError, TypeError, ValueError) as err:
        detail = f" ({err})" if isinstance(err, argparse.ArgumentTypeError) else ""
        raise ConfigError(f"{where} {_short(value)} is not valid{detail}; {_flag(action, option_string)} takes "
                          f"{_expected_form(action)}") from None
    if action.choices is not None and result not in action.choices:
        raise ConfigError(f"{where} {_short(value)} is not a valid choice; {_flag(action, option_string)} takes "
                          f"{_expected_form(action)}")
    return result


def _expected_form(action: argparse.Action) -> str:
    """What a flag accepts, in words: 'one of 18, 34, 50', 'a list of 2 numbers', 'true or false'."""
    if action.nargs == 0:
        return "true or false"
    if action.choices is not None:
        item = "one of " + ", ".join(map(str, action.choices))
    elif action.type in _TYPE_NAMES or action.type is None:
        item = _TYPE_NAMES.get(action.type, "text")
    else:
        item = f"a value {getattr(action.type, '__name__', 'of its type')} accepts"
    nargs = action.nargs
    if nargs in (None, argparse.OPTIONAL):
        return item
    if isinstance(nargs, int):
        return f"a list of {nargs} values, each {item}"
    return f"a list of {'one or more' if nargs == argparse.ONE_OR_MORE else 'any number of'} values, each {item}"


def _flag(action: argparse.Action, option_string: str | None) -> str:
    return option_string or (action.option_strings[0] if action.option_strings else action.dest)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _yaml_kind(data: Any) -> str:
    return {list: "list", str: "single text value", int: "single number", float: "single number",
            bool: "single boolean"}.get(type(data), type(data).__name__)


class _RaisingParser:
    """The script's parser for an action to call, whose ``error`` raises instead of exiting."""

    def __init__(self, parser: argparse.ArgumentParser, where: str):
        self._parser, self._where = parser, where

    def __getattr__(self, name):
        return getattr(self._parser, name)

    def error(self, message: str):
        raise ConfigError(f"{self._where} {message}")


# ------------------------------------------------------------------------------ writing a run's config.yaml

def config_yaml_text(options: Mapping[str, Any], title: str = "") -> str:
    """``options`` as a config file that ``--config`` reads back to the same values.

    Leaves out `NOT_REPEATED_OPTIONS`; keeps the order given; unset flags are written as null.
    ``title`` becomes a comment line at the top.
    """
    import yaml

    kept = {name: _plain(value) for name, value in options.items() if name not in NOT_REPEATED_OPTIONS}
    body = yaml.safe_dump(kept, sort_keys=False, default_flow_style=None, allow_unicode=True, width=1000)
    header = "".join(f"# {line}\n" for line in title.splitlines()) if title else ""
    return header + body


def write_config_yaml(path: str | os.PathLike, options: Mapping[str, Any], title: str = "") -> None:
    """Write `config_yaml_text` to ``path`` atomically (readers see the old file or the whole new one)."""
    from utils import atomic_output

    text = config_yaml_text(options, title)
    with atomic_output(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def _plain(value: Any) -> Any:
    """Tuples and paths as YAML's plain lists and text (safe_dump refuses other Python types)."""
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return value
