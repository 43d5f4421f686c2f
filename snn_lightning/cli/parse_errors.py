"""Parse errors of the CLI as one line naming the setting, what was wrong and the fix (with a "did you mean")."""

from __future__ import annotations

import difflib
import importlib
import re
from collections.abc import Iterable
from typing import NoReturn

from jsonargparse import ArgumentParser
from lightning.pytorch.cli import LightningArgumentParser

from snn_lightning.errors import ConfigurationError

__all__ = ["SNNArgumentParser", "explain_parse_error"]


class SNNArgumentParser(LightningArgumentParser):
    """LightningArgumentParser whose errors are one line naming the setting and the fix (a :class:`ConfigurationError`)."""

    def error(self, message: str, ex: Exception | None = None) -> NoReturn:
        """Raise :class:`ConfigurationError` with ``message`` made concise; internal parsers keep jsonargparse's behaviour."""
        if not self.exit_on_error:
            super().error(message, ex)
        parser = getattr(ex, "subcommand_parser", None) or self
        raise ConfigurationError(explain_parse_error(message, parser)) from ex


def _suggest(word: str, choices: Iterable[str]) -> str:
    """Return ``" (did you mean X?)"`` for the closest of ``choices`` to ``word``, or ``""``."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]}?)" if close else ""


def _class_arguments(class_path: str) -> list[str]:
    """Return the init argument names of the class at ``class_path`` as jsonargparse sees them."""
    module_name, _, class_name = class_path.rpartition(".")
    try:  # the class the user's config named, which jsonargparse has imported already
        cls = getattr(importlib.import_module(module_name), class_name)
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
