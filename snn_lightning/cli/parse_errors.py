"""Parse errors of the CLI as one line naming the setting, what was wrong and the fix (with a "did you mean")."""

from __future__ import annotations

import difflib
import importlib
import inspect
import re
from collections.abc import Iterable, Mapping
from typing import NoReturn

from jsonargparse import ArgumentParser
from jsonargparse._typehints import get_all_subclass_paths
from lightning.pytorch.cli import LightningArgumentParser

from snn_lightning.class_paths import class_at
from snn_lightning.errors import ConfigurationError, user_error

__all__ = ["SNNArgumentParser", "explain_parse_error"]

# The packages of the classes a config names (models, data modules, neurons), imported before suggesting a class
# so that a short ``class_path`` is compared with their subclasses too.
_CLASS_PACKAGES = ("snn_lightning.modules", "snn_lightning.data", "snn_lightning.neurons", "snn_lightning.models")


class SNNArgumentParser(LightningArgumentParser):
    """LightningArgumentParser whose errors are one line naming the setting and the fix (a :class:`ConfigurationError`)."""

    def error(self, message: str, ex: Exception | None = None) -> NoReturn:
        """Raise :class:`ConfigurationError` with ``message`` made concise; internal parsers keep jsonargparse's behaviour."""
        if not self.exit_on_error:
            super().error(message, ex)
        explained = user_error(ex)
        if explained is not None:  # the parser of an inline --config explained it already
            raise explained
        parser = getattr(ex, "subcommand_parser", None) or self
        raise ConfigurationError(explain_parse_error(message, parser)) from ex


def _suggest(word: str, choices: Iterable[str] | Mapping[str, str]) -> str:
    """Return ``" (did you mean X?)"`` for the closest of ``choices`` to ``word`` (shown as ``choices[X]`` for a mapping), or ``""``."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    if not close:
        return ""
    return f" (did you mean {choices[close[0]] if isinstance(choices, Mapping) else close[0]}?)"


def _classes_near(class_path: str, bases: tuple[type, ...]) -> list[str]:
    """Return the import paths of the classes a misspelled ``class_path`` probably meant: the public ``bases``
    subclasses in the deepest module of ``class_path`` that imports, then every known subclass of ``bases``."""
    for package in _CLASS_PACKAGES:
        importlib.import_module(package)
    paths = []
    parts = class_path.split(".")
    for end in range(len(parts) - 1, 0, -1):
        try:
            module = importlib.import_module(".".join(parts[:end]))
        except ImportError:
            continue
        names = getattr(module, "__all__", [name for name in vars(module) if not name.startswith("_")])
        classes = [getattr(module, name, None) for name in names]
        paths += [
            f"{module.__name__}.{cls.__name__}"
            for cls in classes
            if inspect.isclass(cls) and (not bases or issubclass(cls, bases))
        ]
        break
    paths += [path for base in bases for path in get_all_subclass_paths(base)]
    return list(dict.fromkeys(paths))


def _unknown_class(message: str) -> str | None:
    """Return the line for a ``class_path`` that names no class (misspelled: ``LIFF``, ``snn_lightning.modules.SNNClasifier``)
    with the closest known class, or None when ``message`` is about something else."""
    found = re.search(
        r"Problem with given class_path '([\w.]+)':\s*module '[\w.]+' has no attribute|"
        r"Expected a dot import path string: (\w+)|"
        r"expects a function or a callable class: module '([\w.]+)' has no attribute '(\w+)'",
        message,
    )
    if not found:
        return None
    given = found[1] or found[2] or f"{found[3]}.{found[4]}"
    before = message[: found.start()]
    setting = ".init_args.".join(dict.fromkeys(re.findall(r'Parser key "([\w.]+)"', before))) or "class_path"
    subtypes = re.findall(r"Subtypes: \[(.*?)\]", before)
    bases = tuple(
        cls for cls in map(class_at, re.findall(r"<class '([\w.]+)'>", subtypes[-1] if subtypes else "")) if cls
    )
    known = _classes_near(given, bases)
    by_name = {path.rpartition(".")[2]: path for path in reversed(known)}  # the first of a name wins
    listed = ", ".join(known[:6]) + (", …" if len(known) > 6 else "")
    fix = f"known classes: {listed}" if known else "give the full import path of a class"
    return f"{setting} names class {given}, which does not exist{_suggest(given.rpartition('.')[2], by_name)}; {fix}"


def _class_arguments(class_path: str) -> list[str]:
    """Return the init argument names of the class at ``class_path`` as jsonargparse sees them."""
    cls = class_at(class_path)  # the class the user's config named, which jsonargparse has imported already
    if cls is None:
        return []
    try:
        parser = ArgumentParser(exit_on_error=False)
        parser.add_class_arguments(cls, fail_untyped=False)
    except (ImportError, AttributeError, ValueError):
        return []
    return [key for key in parser.get_defaults().keys() if "." not in key]


def _type_name(expected: str) -> str:
    """Return jsonargparse's ``<class 'int'>`` / ``typing.Literal['a', 'b']`` as ``int`` / ``one of a, b``."""
    literal = re.fullmatch(r"typing\.Literal\[(.*)\]", expected)
    if literal:
        return "one of " + ", ".join(choice.strip(" '\"") for choice in literal[1].split(","))
    return re.sub(r"<class '(?:[\w.]+\.)?(\w+)'>", r"\1", expected).replace("NoneType", "null")


def explain_parse_error(message: str, parser: ArgumentParser) -> str:
    """Return jsonargparse's multi-line ``message`` as one line naming the setting, what was wrong and the fix."""
    subcommand = parser.prog.split()[-1] if " " in parser.prog else ""
    help_hint = f"; `snn-lightning {subcommand + ' ' if subcommand else ''}--help` lists the settings"
    outer = re.match(r'Parser key "([\w.]+)"', message)
    group = outer[1] if outer else ""
    unknown_class = _unknown_class(message)
    if unknown_class:
        return unknown_class
    class_path = re.search(r"Problem with given class_path '([\w.]+)'", message)
    unknown_option = re.search(r"Option '(\w+)' is not accepted", message)
    if class_path and unknown_option:
        arguments = _class_arguments(class_path[1])
        return (
            f"{group}.init_args.{unknown_option[1]} is not an argument of {class_path[1]}"
            f"{_suggest(unknown_option[1], arguments)}; its arguments are {', '.join(arguments)}"
        )
    unknown = re.search(r"unrecognized arguments: --?([\w.]+)|does not accept option '([\w.]+)'", message)
    if unknown:
        key = unknown[1] or unknown[2]
        keys = list(parser.get_defaults().keys())
        return f"unknown setting {key}{_suggest(key, keys) or _suggest(key.split('.')[0], keys)}{help_hint}"
    typed = re.search(r'Parser key "(\w+)":\s+Expected an? (.+?)\. Got value: (.*)', message)
    if typed:
        key = f"{group}.init_args.{typed[1]}" if class_path else typed[1]
        expected = _type_name(typed[2])
        choices = (
            [c.strip() for c in expected.removeprefix("one of ").split(",")] if expected.startswith("one of ") else []
        )
        return f"{key} must be {expected}, got {typed[3]!r}{_suggest(typed[3], choices)}"
    union = re.search(r"Subtypes: \[(.*?)\].*Given value: (.*)", message, re.DOTALL)
    if outer and union and "class_path" not in message:
        expected = " or ".join(_type_name(name.strip()) for name in union[1].split(", "))
        return f"{group} must be {expected}, got {union[2].strip()!r}"
    choice = re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)", message)
    if choice:
        options = [option.strip(" '") for option in choice[2].split(",")]
        return f"unknown subcommand {choice[1]!r}{_suggest(choice[1], options)}; choose from {', '.join(options)}"
    boilerplate = (
        "Does not validate against any",
        "Subtypes:",
        "Errors:",
        "Given value type:",
        "- Expected a <class 'NoneType'>",
    )
    lines = [
        line.strip(" -") for line in message.splitlines() if line.strip() and not line.strip().startswith(boilerplate)
    ]
    return " ".join(lines) + help_hint
