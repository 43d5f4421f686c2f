"""The settings a user gave explicitly: read from the ``--config`` files and the command line before parsing.

Why: jsonargparse merges defaults, files and the command line without saying which values were given; the
run folder's outputs, command-line model settings over a checkpoint's and the linked-key refusal need them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from snn_lightning.errors import ConfigurationError, missing_file_reason

__all__ = ["GivenSettings"]


def _config_files(argv: list[str]) -> list[str]:
    """Return the values given to ``--config`` / ``-c`` in ``argv``."""
    files = []
    for index, token in enumerate(argv):
        if token in ("--config", "-c") and index + 1 < len(argv):
            files.append(argv[index + 1])
        elif token.startswith("--config="):
            files.append(token.partition("=")[2])
    return files


class _DuplicateKey(Exception):
    """A mapping key given twice in one YAML document: its dotted path and both line numbers."""

    def __init__(self, key: str, first_line: int, second_line: int) -> None:
        super().__init__(key, first_line, second_line)
        self.key = key
        self.lines = f"lines {first_line} and {second_line}" if first_line != second_line else f"line {first_line}"


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice in one mapping, at any depth: PyYAML keeps the last one silently,
    which drops a whole block (a second ``model:`` replaces the first)."""

    def construct_document(self, node: yaml.Node) -> Any:
        _check_unique_keys(node, "", set())
        return super().construct_document(node)


def _check_unique_keys(node: yaml.Node, prefix: str, seen: set[int]) -> None:
    """Raise :class:`_DuplicateKey` for the first mapping key of ``node`` (dotted under ``prefix``) given twice."""
    if id(node) in seen:  # an alias repeats a node already checked (and may refer to itself)
        return
    seen.add(id(node))
    if isinstance(node, yaml.MappingNode):
        lines: dict[tuple[str, str], int] = {}
        for key_node, value_node in node.value:
            # A `<<` merge key brings defaults that the mapping's own keys may override, as YAML intends.
            if isinstance(key_node, yaml.ScalarNode) and key_node.tag != "tag:yaml.org,2002:merge":
                key, line = (key_node.tag, key_node.value), key_node.start_mark.line + 1
                if key in lines:
                    raise _DuplicateKey(f"{prefix}{key_node.value}", lines[key], line)
                lines[key] = line
            _check_unique_keys(value_node, f"{prefix}{getattr(key_node, 'value', '?')}.", seen)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _check_unique_keys(item, f"{prefix.removesuffix('.')}[{index}].", seen)


def _load_yaml(text: str) -> Any:
    """Return the YAML document ``text`` as Python values, raising :class:`_DuplicateKey` for a key given twice."""
    loader = _UniqueKeyLoader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def _load_config_file(value: str) -> dict[str, Any]:
    """Return the mapping in config file ``value`` (or inline YAML), raising one clear error if it is missing or not YAML."""
    path = Path(value)
    if not path.is_file():
        try:  # jsonargparse also takes the settings themselves: --config "trainer: {max_epochs: 1}"
            inline = None if path.is_dir() else _load_yaml(value)
        except yaml.YAMLError:
            inline = None
        except _DuplicateKey as duplicate:
            raise ConfigurationError(
                f"--config {value!r} sets {duplicate.key} twice ({duplicate.lines} of that YAML); YAML would "
                f"silently keep only the later one, so give it once"
            ) from None
        if isinstance(inline, dict):
            return inline
        raise ConfigurationError(
            f"config file {path.absolute()} {missing_file_reason(path, ('*.yaml', '*.yml'))}; check the path: --config "
            f"takes a YAML file, or a shipped config by name (e.g. --config quickstart; `snn-lightning configs list` lists them)"
        )
    try:
        content = _load_yaml(path.read_text())
    except _DuplicateKey as duplicate:
        raise ConfigurationError(
            f"config file {path} sets {duplicate.key} twice, at {duplicate.lines}; YAML would silently keep only "
            f"the later one (a whole block, for a section such as model:), so merge them into one"
        ) from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        context = getattr(error, "context", None)
        context_mark = getattr(error, "context_mark", None)
        started = f" started at line {context_mark.line + 1}, column {context_mark.column + 1}" if context_mark else ""
        problem = getattr(error, "problem", None) or str(error)
        raise ConfigurationError(
            f"config file {path} is not valid YAML{where}: {problem}"
            + (f" ({context}{started})" if context else "")
            + "; fix the syntax there"
        ) from error
    if content is None:
        raise ConfigurationError(
            f"config file {path} is empty (no settings); fill it (e.g. start from configs/quickstart.yaml) or drop that --config"
        )
    if not isinstance(content, dict):
        raise ConfigurationError(
            f"config file {path} holds a {type(content).__name__}, not a mapping of settings; start it with e.g. `trainer:`"
        )
    return content


def _flatten(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Return nested settings as dotted keys without ``init_args`` (``model.init_args.time_steps`` → ``model.time_steps``)."""
    flat = {}
    for key, value in config.items():
        name = prefix if key == "init_args" else f"{prefix}{key}."
        if isinstance(value, dict):
            flat.update(_flatten(value, name))
        else:
            flat[".".join(part for part in name.rstrip(".").split(".") if part != "init_args")] = value
    return flat


def _settings_of(value: str) -> dict[str, Any]:
    """Return the dotted settings of config ``value``: first those of the base files its ``config:`` key names, then its own."""
    content = _load_config_file(value)
    bases = content.pop("config", None)
    settings: dict[str, Any] = {}
    for base in [bases] if isinstance(bases, str) else bases or []:
        settings.update(_settings_of(str(Path(value).parent / base)))  # jsonargparse resolves it beside the file
    settings.update(_flatten(content))
    return settings


def _command_line_settings(argv: list[str]) -> dict[str, str]:
    """Return the ``--key value`` / ``--key=value`` settings of ``argv`` as dotted keys without ``init_args``."""
    settings = {}
    for index, token in enumerate(argv):
        if not token.startswith("--") or token.startswith("--config"):
            continue
        key, has_value, value = token[2:].partition("=")
        if not has_value:
            if index + 1 >= len(argv) or argv[index + 1].startswith("--"):
                continue
            value = argv[index + 1]
        settings[key.replace(".init_args.", ".")] = value
    return settings


@dataclass
class GivenSettings:
    """The dotted settings (``model.time_steps``, no ``init_args``) given in config files and on the command line."""

    # Every setting given, the command line's winning over the config files'.
    explicit: dict[str, Any] = field(default_factory=dict)
    # The settings given on the command line only.
    command_line: dict[str, str] = field(default_factory=dict)
    # Every value given to trainer.default_root_dir (a logger save_dir equal to one is the run folder).
    roots: set[Path] = field(default_factory=set)

    @classmethod
    def read(cls, argv: list[str]) -> GivenSettings:
        """Return the settings of ``argv`` and its config files, raising :class:`ConfigurationError` for a bad config file.

        Args:
            argv: the command-line arguments (subcommand included).
        """
        given = cls()
        roots = []
        for value in _config_files(argv):
            settings = _settings_of(value)
            given.explicit.update(settings)
            roots.append(settings.get("trainer.default_root_dir"))
        given.command_line = _command_line_settings(argv)
        given.explicit.update(given.command_line)
        roots.append(given.command_line.get("trainer.default_root_dir"))
        given.roots = {Path(str(root)).expanduser().absolute() for root in roots if root}
        return given
