"""The ``kilonova`` command."""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from kilonova.config import Config, ConfigError

SERVICES_IN_PORT_ORDER = ("identity", "compute", "placement", "image", "network", "block-storage")


def _config_from_args(args: argparse.Namespace) -> Config:
    overrides: dict[str, dict[str, str]] = {}
    if getattr(args, "hosts", None) is not None:
        overrides.setdefault("fake_driver", {})["hosts"] = str(args.hosts)
    if getattr(args, "base_port", None):
        overrides["ports"] = {name: str(args.base_port + i) for i, name in enumerate(SERVICES_IN_PORT_ORDER)}
    return Config.load(args.config, state_dir=args.state_dir, overrides=overrides)


def cmd_up(args: argparse.Namespace) -> int:
    from kilonova import aio
    from kilonova.common import logs

    conf = _config_from_args(args)
    logs.setup(conf, "kilonova-up", interactive=True, debug=args.debug)
    clouds_yaml = Path(args.clouds_yaml).expanduser() if args.clouds_yaml else \
        Path("~/.config/openstack/clouds.yaml").expanduser()
    aio.up(conf, clouds_yaml)
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from kilonova import aio

    from kilonova.common import logs

    conf = _config_from_args(args)
    logs.setup(conf, "kilonova-" + "-".join(args.services), interactive=False, debug=args.debug)
    aio.serve(conf, args.services)
    return 0


def cmd_config_sample(args: argparse.Namespace) -> int:
    """Print every option with its help, type and default, as an INI file an operator can start from."""
    from kilonova.config.sample import sample

    print(sample())
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kilonova", description="An OpenStack-compatible compute cloud.")
    parser.add_argument("--config", help="INI configuration file (nova.conf style); optional")
    parser.add_argument("--state-dir", help="where databases, keys and images live "
                        "(default: $KILONOVA_STATE_DIR or the user's data directory)")
    parser.add_argument("--debug", action="store_true", help="log at DEBUG level")
    sub = parser.add_subparsers(dest="command", required=True)

    up = sub.add_parser("up", help="start the whole cloud in this process")
    up.add_argument("--hosts", type=int, help="number of fake compute hosts (default 4)")
    up.add_argument("--base-port", type=int,
                    help="serve identity, compute, placement, image, network and block storage on this port and the "
                         "next five (default 5000, 8774, 8778, 9292, 9696, 8776)")
    up.add_argument("--clouds-yaml", help="clouds.yaml to add the 'kilonova' clouds to "
                    "(default ~/.config/openstack/clouds.yaml)")
    up.set_defaults(func=cmd_up)

    serve = sub.add_parser("serve", help="run only the named services in this process "
                           "(identity, placement, image, network, volume, api, conductor, scheduler, compute, "
                           "l3, novncproxy)")
    serve.add_argument("services", nargs="+", metavar="SERVICE")
    serve.add_argument("--base-port", type=int, help="as for 'up'")
    serve.set_defaults(func=cmd_serve)

    sample = sub.add_parser("config-sample", help="print every configuration option with its default")
    sample.set_defaults(func=cmd_config_sample)

    from kilonova.manage import register as register_manage
    register_manage(sub)

    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args)
    except ConfigError as exc:
        parser.exit(2, f"kilonova: configuration error: {exc}\n")


if __name__ == "__main__":
    sys.exit(main())
