"""``python exec_env.py <env-file> -- argv...``: exec argv with exactly the environment in the file.

The file is JSON ``{"NAME": "value", ...}``, mode 0600, written by clown just before the
start; it is deleted as soon as it is read. This keeps keys off every command line
(tmux, zellij and docker argv are visible in ``ps``). Standard library only, so it runs
by path under any Python without clown on ``sys.path``.
"""

import json
import os
import sys


def main(argv: list[str]) -> None:
    if len(argv) < 3 or argv[1] != "--":
        sys.stderr.write("usage: exec_env.py ENV_FILE -- PROGRAM [ARGS...]\n")
        raise SystemExit(2)
    path, command = argv[0], argv[2:]
    with open(path) as handle:
        env = json.load(handle)
    os.unlink(path)
    if not isinstance(env, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in env.items()):
        sys.stderr.write(f"exec_env: {path} is not a JSON object of strings\n")
        raise SystemExit(2)
    try:
        os.execvpe(command[0], command, env)
    except OSError as exc:
        sys.stderr.write(f"exec_env: cannot run {command[0]}: {exc}\n")
        raise SystemExit(127)


if __name__ == "__main__":
    main(sys.argv[1:])
