"""Start one colour of a service that keeps the payments.deploy contract.

Run from the release directory: reads the colour's env file (systemd EnvironmentFile syntax, values
double-quoted with backslash escapes) and the release's manifest.json, puts the port into the start
command and replaces itself with it, so the supervisor's signals (SIGTERM: graceful stop) reach the
service directly. Values are never passed through a shell and never printed.
"""
import argparse
import json
import os
import shlex
import sys


def unescape(quoted):
    """Undo the template's escaping: a backslash takes the next character literally."""
    out, chars = [], iter(quoted)
    for char in chars:
        out.append(next(chars, "") if char == "\\" else char)
    return "".join(out)


def parse_env_file(path):
    env = {}
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            name, sep, value = line.partition("=")
            if not sep or not name.isidentifier():
                sys.exit("payments-launch: %s line %d is not NAME=VALUE" % (path, number))
            if len(value) >= 2 and value[0] == value[-1] == '"':
                value = unescape(value[1:-1])
            env[name] = value
    return env


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env-file", required=True)
    parser.add_argument("--port", required=True, type=int)
    parser.add_argument("--manifest", default="manifest.json")
    args = parser.parse_args()
    with open(args.manifest, encoding="utf-8") as handle:
        manifest = json.load(handle)
    argv = shlex.split(manifest["start_command"].replace("{port}", str(args.port)))
    env = dict(os.environ)
    env.update(parse_env_file(args.env_file))
    sys.stdout.flush()
    os.execvpe(argv[0], argv, env)


if __name__ == "__main__":
    main()
