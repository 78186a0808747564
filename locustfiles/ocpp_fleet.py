"""One Locust user = one emulated OCPP 1.6J wallbox (docs/loadtest.md).

    locust -f locustfiles/ocpp_fleet.py --scenario scenarios/demo.toml \
        --csms-url ws://127.0.0.1:9000/ocpp
"""

from locust import events

from emulator.loadtest import WallboxUser, register

register(events)


class Wallbox(WallboxUser):
    """Options: --scenario, --csms-url (or --host), --id-prefix, --seed, --fleet-shape, ..."""
