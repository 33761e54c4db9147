"""``kilonova completion bash``: a completion script generated from the command's own argparse tree.

Every command path (``kilonova``, ``kilonova manage``, ``kilonova manage cell_v2``, ...) gets the words that may follow it: its
subcommands, positional choices and options, plus the global options, which any subcommand accepts too.
zsh runs the same script after ``autoload bashcompinit; bashcompinit``.
"""
from __future__ import annotations

import argparse
import shlex

FILE_OPTIONS = ("--config", "--state-dir", "--clouds-yaml")


def _walk(parser: argparse.ArgumentParser, path: str, words: dict[str, list[str]], valued: set[str]) -> None:
    found: list[str] = []
    for action in parser._actions:   # argparse has no public way to list them
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                found.append(name)
                _walk(child, f"{path} {name}".strip(), words, valued)
        elif action.option_strings:
            if "-h" in action.option_strings:
                continue
            found.extend(o for o in action.option_strings if o.startswith("--"))
            if action.nargs != 0:
                valued.update(action.option_strings)
        elif action.choices:
            found.extend(str(choice) for choice in action.choices)
    words[path] = found


def bash_script(parser: argparse.ArgumentParser) -> str:
    words: dict[str, list[str]] = {}
    valued: set[str] = set()
    _walk(parser, "kilonova", words, valued)
    global_options = [o for o in words["kilonova"] if o.startswith("--") and o != "--version"]
    table = "\n".join(f"    [{shlex.quote(path)}]={shlex.quote(' '.join(dict.fromkeys(found + global_options)))}"
                      for path, found in words.items())
    return f"""# kilonova completion (bash; zsh after `autoload bashcompinit; bashcompinit`)
declare -gA _kilonova_words=(
{table}
)
_kilonova_valued=" {' '.join(sorted(valued))} "
_kilonova() {{
    local cur=${{COMP_WORDS[COMP_CWORD]}} prev=${{COMP_WORDS[COMP_CWORD-1]}} path=kilonova word i
    case "$prev" in
        {'|'.join(FILE_OPTIONS)}) COMPREPLY=($(compgen -f -- "$cur")); return;;
    esac
    if [[ $_kilonova_valued == *" $prev "* ]]; then COMPREPLY=(); return; fi
    for ((i = 1; i < COMP_CWORD; i++)); do
        word=${{COMP_WORDS[i]}}
        if [[ $word == -* ]]; then
            [[ $_kilonova_valued == *" $word "* ]] && ((i++))
            continue
        fi
        [[ -n ${{_kilonova_words["$path $word"]+set}} ]] && path="$path $word"
    done
    COMPREPLY=($(compgen -W "${{_kilonova_words[$path]}}" -- "$cur"))
}}
complete -o default -F _kilonova kilonova"""
