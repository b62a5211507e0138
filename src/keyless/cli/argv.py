"""Options in any position: `keyless publisher add --data D github ...` as well as after.

argparse gives each (sub)command's parser only the words after that command's name, and a
parser knows only its own options: `--data` given before `github` reaches `add`'s parser, which
has no `--data`, and it then reads the value `D` as the provider ("argument kind: invalid
choice"). `in_place` moves each option next to the word of the command that defines it before
argparse reads the line, so people can write options where they think of them.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

_NEGATIVE_NUMBER = re.compile(r"^-\d+$|^-\d*\.\d+$")


@dataclass
class _Level:
    """One (sub)command on the line: its parser, its word, and what goes after the word."""

    parser: argparse.ArgumentParser
    word: str | None  # None for `keyless` itself
    options: list[str] = field(default_factory=list)
    positionals: list[str] = field(default_factory=list)


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _takes_the_rest(parser: argparse.ArgumentParser) -> bool:
    """Whether `parser` hands all words after its first positional one to a command it runs:
    their options are that command's, and stay where they are."""
    return any(action.nargs == argparse.REMAINDER for action in parser._actions)


def _own_options(parser: argparse.ArgumentParser) -> dict[str, bool]:
    """The options `parser` itself defines -> whether each takes a value."""
    return {
        option: action.nargs != 0 for action in parser._actions for option in action.option_strings
    }


def _all_options(parser: argparse.ArgumentParser) -> dict[str, bool]:
    """The options of `parser` and every subcommand below it -> whether each takes a value."""
    found = _own_options(parser)
    for sub in _subcommands(parser).values():
        found.update(_all_options(sub))
    return found


def _is_option(word: str, known: dict[str, bool]) -> bool:
    """Whether argparse would read `word` as an option rather than a positional value."""
    if not word.startswith("-") or word == "-":
        return False
    if word.split("=", 1)[0] in known:
        return True
    # argparse reads these as values: negative numbers and words with a space ("-a name").
    return not (_NEGATIVE_NUMBER.match(word) or " " in word)


def _full_name(word: str, known: dict[str, bool]) -> str:
    """`--dat` -> `--data` when it abbreviates exactly one option (argparse accepts those)."""
    name = word.split("=", 1)[0]
    if name in known or not name.startswith("--"):
        return name
    matches = [option for option in known if option.startswith(name)]
    return matches[0] if len(matches) == 1 else name


def in_place(parser: argparse.ArgumentParser, argv: Sequence[str]) -> list[str]:
    """`argv` with each option (and its value) moved right after the word of the (sub)command
    on the line that defines it; positional words keep their order. An option no command on
    the line knows stays at the end, where argparse reports it.
    """
    known = _all_options(parser)
    levels = [_Level(parser, None)]
    pending: list[tuple[str, list[str], int]] = []  # (option name, its words, level read at)
    words = list(argv)
    position = 0
    while position < len(words):
        word = words[position]
        position += 1
        if word == "--":  # everything after is a value
            levels[-1].positionals += words[position - 1 :]
            break
        if _is_option(word, known):
            name = _full_name(word, known)
            chunk = [word]
            if "=" not in word and position < len(words):
                following = words[position]
                # An option no command knows (a typo) probably has a value too: keep it with
                # the option, so argparse names the option rather than the value.
                takes_value = known.get(name)
                if takes_value is None:
                    takes_value = not _is_option(following, known) and following not in (
                        _subcommands(levels[-1].parser)
                    )
                if takes_value:
                    chunk.append(following)
                    position += 1
            pending.append((name, chunk, len(levels) - 1))
            continue
        below = _subcommands(levels[-1].parser)
        if word in below and not levels[-1].positionals:
            levels.append(_Level(below[word], word))
        elif _takes_the_rest(levels[-1].parser):  # `ci-emulator run COMMAND ARGS...`
            levels[-1].positionals += words[position - 1 :]
            break
        else:
            levels[-1].positionals.append(word)
    for name, chunk, read_at in pending:
        # The command it was given after, if that one has it (`publisher add --project demo
        # gitlab --project group/app`: one for `add`, one for `gitlab`), else the nearest one
        # below, else above, that has it.
        nearest = [*levels[read_at:], *reversed(levels[:read_at])]
        owner = next((level for level in nearest if name in _own_options(level.parser)), levels[-1])
        owner.options += chunk
    line: list[str] = []
    for level in levels:
        if level.word is not None:
            line.append(level.word)
        line += level.options + level.positionals
    return line
