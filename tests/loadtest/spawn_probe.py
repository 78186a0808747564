"""Child process of test_spawn_messages: how often a worker builds Locust's parser while it
reads one spawn message carrying all of a master's options (Locust's and ocpp-fleet's).

Counts the builds (``setup_parser_arguments``) in Locust's own spawn handler comprehension,
read from ``WorkerRunner.handle_message``'s source, and prints one JSON document.
"""

from __future__ import annotations

import inspect
import json
import re
import sys

import locust
from locust import argument_parser
from locust.runners import WorkerRunner

builds = 0
setup = argument_parser.setup_parser_arguments


def counting_setup(parser: object) -> None:
    global builds
    builds += 1
    setup(parser)


argument_parser.setup_parser_arguments = counting_setup

from emulator.loadtest.plugin import register  # noqa: E402

cache = "--cache" in sys.argv
if cache:
    register(locust.events)
else:  # the options only, as a locustfile without the fix would have them
    from emulator.loadtest.options import add_arguments

    locust.events.init_command_line_parser.add_listener(add_arguments)

# What a spawn message carries: the master's parsed options, all of them.
options = vars(argument_parser.get_parser().parse_args([]))
source = inspect.getsource(WorkerRunner.handle_message)
# Locust's test, verbatim: the worker keeps the options that are not Locust's own.
handler_test = re.search(r"if (k not in argument_parser\.default_args_dict\(\))", source)
builds = 0
kept = sorted(k for k in options if k not in argument_parser.default_args_dict())
first = argument_parser.default_args_dict()
first["host"] = "mutated by a caller"
if cache:
    register(locust.events)  # a second registration wraps nothing twice
print(
    json.dumps(
        {
            "handler_test": handler_test.group(1) if handler_test else None,
            "options": len(options),
            "builds": builds,
            "kept": kept,
            "host_after_mutation": argument_parser.default_args_dict()["host"],
            "wrapped_once": getattr(argument_parser.default_args_dict, "compute", None) is not None
            and not hasattr(argument_parser.default_args_dict.compute, "compute"),
        }
    )
)
