"""The docs cannot go stale silently: every command in README.md, docs/*.md and notebooks/README.md
accepts the options it shows, and every relative link and image resolves.

Commands are read from fenced code blocks (bash, sh, console or no language) and indented blocks. In
each, `adain-jax SUB`, `python -m MODULE` and `python FILE` are found, and each ``--option`` after them
is checked against the command's own argparse parser or ``--help`` text (absl flags, and config keys of
``--config.KEY=VALUE`` against the config file in force). Nothing runs but ``--help``.
"""

from __future__ import annotations

import functools
import os
import importlib.util
import pathlib
import re
import shlex
import subprocess
import sys

import pytest

from adain_jax import cli

ROOT = pathlib.Path(__file__).resolve().parents[1]
PAGES = sorted([ROOT / "README.md", ROOT / "notebooks" / "README.md", *(ROOT / "docs").glob("*.md")])
SHELL_LANGUAGES = {"", "bash", "sh", "shell", "console"}
PYTHONS = re.compile(r"^(?:\S*/)?python3?$")
SEPARATORS = {"|", "||", "&&", ";", ">", ">>", "&"}
# absl entry points: their --config default (the file whose keys --config.KEY may name).
ABSL_CONFIGS = {"train.main": "train/configs/default.py", "train.studies": "train/configs/study.py",
                "train.ablation": "train/configs/stylegan_digits.py"}


def code_blocks(text: str):
    """Shell code blocks of a markdown page: fenced ones with a shell language, and indented ones."""
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        fence = re.match(r"^\s*```(\w*)", lines[i])
        if fence:
            end = next((j for j in range(i + 1, len(lines)) if lines[j].strip().startswith("```")), len(lines))
            if fence.group(1).lower() in SHELL_LANGUAGES:
                yield "\n".join(lines[i + 1:end])
            i = end + 1
            continue
        if lines[i].startswith("    ") and (i == 0 or not lines[i - 1].strip()):
            end = i
            while end < len(lines) and (lines[end].startswith("    ") or not lines[end].strip()):
                end += 1
            yield "\n".join(line[4:] for line in lines[i:end])
            i = end
            continue
        i += 1


def commands(block: str):
    """(kind, target, options, all tokens) for every adain-jax / python -m / python FILE in a block."""
    for line in re.sub(r"\\\n", " ", block).splitlines():
        try:
            tokens = shlex.split(line, comments=True)
        except ValueError:
            tokens = line.split()
        tokens = [t.strip("[]") for t in tokens]
        for i, token in enumerate(tokens):
            rest = tokens[i + 1:]
            stop = next((k for k, t in enumerate(rest) if t in SEPARATORS), len(rest))
            rest = rest[:stop]
            if token == "adain-jax" and rest and not rest[0].startswith("-"):
                yield "adain-jax", rest[0], rest[1:]
            elif PYTHONS.match(token) and len(rest) >= 2 and rest[0] == "-m":
                yield "module", rest[1], rest[2:]
            elif PYTHONS.match(token) and rest and rest[0].endswith(".py"):
                yield "file", rest[0], rest[1:]


def options_of(args):
    return [a.split("=", 1)[0] for a in args if a.startswith("--") and len(a) > 2]


def all_commands():
    found = []
    for page in PAGES:
        for block in code_blocks(page.read_text()):
            for kind, target, args in commands(block):
                found.append((page.relative_to(ROOT).as_posix(), kind, target, tuple(args)))
    return found


COMMANDS = all_commands()


@functools.lru_cache(maxsize=None)
def help_options(argv: tuple[str, ...]) -> frozenset[str]:
    """The ``--options`` a command's ``--help`` lists (it runs nothing else). absl's ``--helpfull``,
    which lists every flag, exits with status 1 after printing them."""
    absl = argv[0] == "-m" and argv[1] in ABSL_CONFIGS
    proc = subprocess.run([sys.executable, *argv, "--helpfull" if absl else "--help"], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, env={**os.environ, "ADAIN_JAX_CACHE_DIR": "off"})
    assert proc.returncode == (1 if absl else 0) and proc.stdout, f"{' '.join(argv)} --help: {proc.stderr[-1500:]}"
    return frozenset(re.findall(r"--[A-Za-z0-9][A-Za-z0-9_.-]*", proc.stdout))


@functools.lru_cache(maxsize=None)
def config_keys(config_file: str) -> frozenset[str]:
    spec = importlib.util.spec_from_file_location("docs_config", ROOT / config_file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return frozenset(module.get_config().keys())


def adain_jax_options(sub: str) -> set[str]:
    parser = cli.build_parser()
    subparsers = next(a for a in parser._actions if a.choices and sub in (a.choices or {}))
    return {s for action in subparsers.choices[sub]._actions for s in action.option_strings}


def test_the_docs_show_commands_of_every_kind():
    kinds = {kind for _, kind, _, _ in COMMANDS}
    assert kinds == {"adain-jax", "module", "file"}, kinds
    assert len(COMMANDS) > 50


@pytest.mark.parametrize("page, kind, target, args", COMMANDS,
                         ids=[f"{p}:{k}:{t}:{i}" for i, (p, k, t, _) in enumerate(COMMANDS)])
def test_each_command_accepts_the_options_it_shows(page, kind, target, args):
    shown = options_of(args)
    if kind == "adain-jax":
        assert target in cli.COMMANDS, f"{page}: adain-jax has no subcommand {target!r}"
        unknown = [o for o in shown if o not in adain_jax_options(target)]
    elif kind == "module":
        if target.startswith("pytest") or target == "pip":
            return  # another tool's options
        assert importlib.util.find_spec(target) is not None, f"{page}: no module {target}"
        if not shown:
            return
        accepted = help_options(("-m", target))
        config_file = next((a.split("=", 1)[1] if "=" in a else args[args.index(a) + 1]
                            for a in args if a.split("=", 1)[0] == "--config"), ABSL_CONFIGS.get(target))
        unknown = []
        for option in shown:
            if option.startswith("--config.") and config_file:
                key = option[len("--config."):].split(".")[0]
                if key not in config_keys(config_file):
                    unknown.append(option)
            elif option not in accepted:
                unknown.append(option)
    else:
        path = ROOT / target
        assert path.is_file(), f"{page}: no file {target}"
        if not shown:
            return
        accepted = help_options((target,))
        unknown = [o for o in shown if o not in accepted]
    assert not unknown, f"{page}: `{kind} {target}` does not accept {unknown}"


LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


@pytest.mark.parametrize("page", PAGES, ids=[p.relative_to(ROOT).as_posix() for p in PAGES])
def test_every_relative_link_and_image_resolves(page):
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)  # code is not a link
    broken = []
    for target in LINK.findall(text):
        if re.match(r"^[a-z]+:", target) or target.startswith("#"):
            continue
        path = (page.parent / target.split("#", 1)[0]).resolve()
        if not path.exists():
            broken.append(target)
    assert not broken, f"{page.relative_to(ROOT)}: {broken}"
