"""The ``kilonova`` command."""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from kilonova.config import Config, ConfigError
from kilonova.runtime import PortInUse, StateDirBusy, StateLock
from kilonova.services import SERVICE_CLASSES, SERVICES_IN_PORT_ORDER

# Options of the command itself, accepted after the subcommand too (`kilonova up --state-dir X`).
GLOBAL_WITH_VALUE = ("--config", "--state-dir")
GLOBAL_FLAGS = ("--debug",)


def _config_from_args(args: argparse.Namespace) -> Config:
    overrides: dict[str, dict[str, str]] = {}
    if getattr(args, "hosts", None) is not None:
        overrides.setdefault("fake_driver", {})["hosts"] = str(args.hosts)
    if getattr(args, "base_port", None):
        overrides["ports"] = {name: str(args.base_port + i) for i, name in enumerate(SERVICES_IN_PORT_ORDER)}
    conf = Config.load(args.config, state_dir=args.state_dir, overrides=overrides)
    if getattr(args, "base_port", None) and not conf.is_set("vnc", "novncproxy_port"):
        conf.set("vnc", "novncproxy_port", args.base_port + len(SERVICES_IN_PORT_ORDER))   # the port after the APIs
    return conf


def cmd_up(args: argparse.Namespace) -> int:
    from kilonova import aio
    from kilonova.common import logs, private_files

    conf = _config_from_args(args)
    clouds_yaml = Path(args.clouds_yaml).expanduser() if args.clouds_yaml else \
        Path("~/.config/openstack/clouds.yaml").expanduser()
    private_files.private_dir(conf.state_dir)
    lock = StateLock(conf.state_dir, "kilonova up")   # before anything in the state directory is touched
    held = [lock]
    try:
        held += aio.service_locks(conf, None, "kilonova up")   # no `kilonova serve volume` ... beside it
        logs.setup(conf, "kilonova-up", interactive=True, debug=args.debug)
        aio.up(conf, clouds_yaml, lock)
    finally:
        for each in held:
            each.release()
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from kilonova import aio
    from kilonova.common import logs, private_files

    conf = _config_from_args(args)
    private_files.private_dir(conf.state_dir)
    # The services that own files in the state directory, one process each: before anything there is touched.
    held = aio.service_locks(conf, args.services, "kilonova serve " + " ".join(args.services))
    try:
        logs.setup(conf, "kilonova-" + "-".join(args.services), interactive=False, debug=args.debug)
        aio.serve(conf, args.services)
    finally:
        for each in held:
            each.release()
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    """Whether a cloud runs on the state directory: its pid, endpoints and whether each answers its
    /healthcheck. Exit 0 when it runs, 3 when none does (as an init script's status)."""
    import urllib.error
    import urllib.request
    from urllib.parse import urlsplit

    from kilonova import runtime

    conf = Config.load(args.config, state_dir=args.state_dir)
    info = runtime.running(conf.state_dir)
    if info is None:
        print(f"No cloud is running on {conf.state_dir}.")
        return 3
    print(f"Kilonova is {info.get('state', 'starting')} on {conf.state_dir}: pid {info.get('pid', '?')}, "
          f"{info.get('command', 'kilonova')}, started {info.get('started', '?')}")
    for name, url in info.get("endpoints", {}).items():
        parts = urlsplit(url)
        try:
            with urllib.request.urlopen(f"{parts.scheme}://{parts.netloc}/healthcheck", timeout=3) as answer:
                health = "up" if answer.status == 200 else f"HTTP {answer.status}"
        except urllib.error.HTTPError as exc:
            health = f"DOWN (HTTP {exc.code}: {' '.join(exc.read().decode(errors='replace').split())[:120]})"
        except (OSError, ValueError) as exc:
            health = f"DOWN ({getattr(exc, 'reason', exc)})"
        print(f"  {name:<13} {url:<40} {health}")
    if info.get("consoles"):
        print(f"  {'consoles':<13} {info['consoles']}")
    if info.get("services"):
        print(f"  services: {', '.join(info['services'])}")
    for what in ("clouds_yaml", "openrc"):
        if info.get(what):
            print(f"  {what.replace('_', '.')}: {info[what]}")
    return 0


def cmd_stop(args: argparse.Namespace) -> int:
    """Stop the cloud running on the state directory (SIGTERM) and wait until it has exited."""
    from kilonova import runtime

    conf = Config.load(args.config, state_dir=args.state_dir)
    try:
        info = runtime.stop(conf.state_dir, timeout=args.timeout)
    except TimeoutError as exc:
        print(f"kilonova: {exc}", file=sys.stderr)
        return 1
    if info is None:
        print(f"No cloud is running on {conf.state_dir}.")
    else:
        print(f"Kilonova stopped (pid {info.get('pid', '?')}, {conf.state_dir}).")
    return 0


def cmd_completion(args: argparse.Namespace) -> int:
    from kilonova.completion import bash_script

    print(bash_script(args.parser))
    return 0


class _Version(argparse.Action):
    """``--version``, looked up only when asked (importlib.metadata costs a few ms at every start)."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, help=None):
        super().__init__(option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        from importlib.metadata import PackageNotFoundError, version

        try:
            found = version("kilonova")
        except PackageNotFoundError:
            found = "unknown (not installed)"
        print(f"kilonova {found}")
        parser.exit(0)


def hoist_global_options(argv: list[str]) -> list[str]:
    """Move --config/--state-dir/--debug given after the subcommand in front of it, where argparse takes them."""
    front, rest, i = [], [], 0
    while i < len(argv):
        word = argv[i]
        if word == "--":
            rest.extend(argv[i:])
            break
        if word in GLOBAL_FLAGS:
            front.append(word)
        elif word in GLOBAL_WITH_VALUE and i + 1 < len(argv):
            front.extend(argv[i:i + 2])
            i += 1
        elif word.split("=", 1)[0] in GLOBAL_WITH_VALUE:
            front.append(word)
        else:
            rest.append(word)
        i += 1
    return front + rest


def cmd_config_sample(args: argparse.Namespace) -> int:
    """Print every option with its help, type and default, as an INI file an operator can start from."""
    from kilonova.config.sample import sample

    print(sample())
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kilonova", description="An OpenStack-compatible compute cloud.",
                                     epilog="--config, --state-dir and --debug may also follow the subcommand.")
    parser.add_argument("--version", action=_Version, help="print the version and exit")
    parser.add_argument("--config", help="INI configuration file (nova.conf style); optional")
    parser.add_argument("--state-dir", help="where databases, keys and images live "
                        "(default: $KILONOVA_STATE_DIR or the user's data directory)")
    parser.add_argument("--debug", action="store_true", help="log at DEBUG level")
    sub = parser.add_subparsers(dest="command", required=True)

    up = sub.add_parser("up", help="start the whole cloud in this process")
    up.add_argument("--hosts", type=int, help="number of fake compute hosts (default 4)")
    up.add_argument("--base-port", type=int,
                    help="serve identity, compute, placement, image, network and block storage on this port and the "
                         "next five, and the console proxy on the one after (default 5000, 8774, 8778, 9292, 9696, "
                         "8776; consoles 6080)")
    up.add_argument("--clouds-yaml", help="clouds.yaml to add the 'kilonova' clouds to "
                    "(default ~/.config/openstack/clouds.yaml)")
    up.set_defaults(func=cmd_up)

    serve = sub.add_parser("serve", help="run only the named services in this process "
                           "(identity, placement, image, network, volume, api, conductor, scheduler, compute, "
                           "l3, novncproxy)")
    serve.add_argument("services", nargs="+", metavar="SERVICE", choices=list(SERVICE_CLASSES))
    serve.add_argument("--base-port", type=int, help="as for 'up'")
    serve.set_defaults(func=cmd_serve)

    sample = sub.add_parser("config-sample", help="print every configuration option with its help, type and default")
    sample.set_defaults(func=cmd_config_sample)

    status = sub.add_parser("status", help="is a cloud running on the state directory: pid, endpoints, health "
                            "(exit 0: running, 3: not running)")
    status.set_defaults(func=cmd_status)

    stop = sub.add_parser("stop", help="stop the cloud running on the state directory and wait until it has")
    stop.add_argument("--timeout", type=float, default=60.0, help="seconds to wait (default 60)")
    stop.set_defaults(func=cmd_stop)

    completion = sub.add_parser("completion", help="print a shell completion script: "
                                "`source <(kilonova completion bash)` (zsh: after `autoload bashcompinit; bashcompinit`)")
    completion.add_argument("shell", choices=["bash", "zsh"])
    completion.set_defaults(func=cmd_completion, parser=parser)

    from kilonova.manage import register as register_manage
    register_manage(sub)

    args = parser.parse_args(hoist_global_options(sys.argv[1:] if argv is None else list(argv)))
    handlers = None
    if args.func in (cmd_up, cmd_serve):
        # They set up logging from the configuration they read: what that reading logs (deprecated options)
        # waits for it, to reach the log file in its format.
        from kilonova.common import logs
        handlers = [logs.EarlyRecords()]
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", handlers=handlers)
    try:
        return args.func(args)
    except ConfigError as exc:
        _flush_logs()
        parser.exit(2, f"kilonova: configuration error: {exc}\n")
    except (StateDirBusy, PortInUse) as exc:
        _flush_logs()
        parser.exit(1, f"kilonova: {exc}\n")


def _flush_logs() -> None:
    """What waits for logging's setup (``logs.EarlyRecords``) goes to stderr before the error that stops it."""
    for handler in logging.getLogger().handlers:
        handler.flush()


if __name__ == "__main__":
    sys.exit(main())
