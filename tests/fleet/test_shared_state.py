"""What a wallbox shares with its fleet, and what it builds only on first use.

These structures keep a wallbox small (docs/loadtest.md, "Where the memory goes"); the
tests pin that they stay shared or deferred *and* that behaviour does not change: the
same numbers are drawn, a change to one wallbox never shows in another.
"""

from __future__ import annotations

from functools import partial

import numpy as np
import pytest

from emulator.core.configuration import Configuration, ConfigurationValueError
from emulator.core.outbox import Message, Outbox
from emulator.core.rng import child_generator, deferred, is_built
from emulator.fleet.runner import Fleet
from emulator.metrics.stats import RunStats
from emulator.transport.driver import ConnectionSettings
from tests.integration.support import scenario


def fleet(chargers: int = 3, **kwargs: object) -> Fleet:
    return Fleet(
        scenario=scenario(**kwargs),  # type: ignore[arg-type]
        csms_url="ws://127.0.0.1:1/ocpp",
        chargers=chargers,
        seed=11,
        reporter=RunStats(),
    )


# ----------------------------------------------------------------------------- streams


def test_a_deferred_stream_draws_what_the_spawned_child_would() -> None:
    spawned = np.random.SeedSequence(7).spawn(4)[3].spawn(4)[2]
    eager = np.random.Generator(np.random.PCG64(spawned))
    lazy = deferred(partial(child_generator, 7, (3, 2)))
    assert not is_built(lazy)
    assert lazy.uniform(0, 1, 5).tolist() == eager.uniform(0, 1, 5).tolist()
    assert is_built(lazy)
    assert lazy.integers(100, size=3).tolist() == eager.integers(100, size=3).tolist()


def test_a_wallbox_without_faults_or_reconnects_builds_only_two_streams() -> None:
    f = fleet()
    for driver in f.drivers:
        assert is_built(driver.wallbox.rng)
        assert not is_built(driver._rng)  # reconnect jitter
        assert not is_built(driver.wallbox.firmware.rng)  # firmware failure draws
        assert driver.network is None  # no fault injector kept either


def test_charger_n_draws_child_n_of_the_seed_in_every_fleet_shape() -> None:
    # Charger 2 alone (as Locust adds it) and charger 2 of a fleet of three draw alike.
    whole = fleet(chargers=3)
    alone = Fleet(
        scenario=scenario(),
        csms_url="ws://127.0.0.1:1/ocpp",
        chargers=1,
        seed=11,
        reporter=RunStats(),
        first_index=2,
    )
    a, b = whole.drivers[1], alone.drivers[0]
    assert a.wallbox.charge_point_id == b.wallbox.charge_point_id
    child = np.random.SeedSequence(11).spawn(2)[1].spawn(4)
    jitter = np.random.Generator(np.random.PCG64(child[2]))
    ceiling = a.settings.backoff_initial
    assert a._backoff() == b._backoff() == float(jitter.uniform(0.0, ceiling))
    firmware = np.random.Generator(np.random.PCG64(child[0].spawn(1)[0]))
    assert a.wallbox.firmware.rng.random() == b.wallbox.firmware.rng.random() == firmware.random()


# ------------------------------------------------------------------------------ backoff


def test_reconnect_backoff_has_full_jitter_below_a_doubling_ceiling() -> None:
    driver = fleet(chargers=1).drivers[0]
    driver.settings = ConnectionSettings(url="ws://x", backoff_initial=1.0, backoff_max=60.0)
    delays = [driver._backoff() for _ in range(200)]  # never overflows, however many
    ceilings = [min(60.0, 2.0**n) for n in range(200)]
    assert all(0.0 <= d <= c for d, c in zip(delays, ceilings, strict=True))
    assert max(delays[10:]) > 30.0  # the window really reaches the maximum
    driver._failed_attempts = 0  # what a successful connection does
    assert driver._backoff() <= 1.0


# ------------------------------------------------------------------------ configuration


def test_wallboxes_of_a_model_share_their_start_values_until_one_changes() -> None:
    a, b = (Configuration(profiles=("Core",), overrides={"HeartbeatInterval": "90"}) for _ in "ab")
    assert a._values is b._values  # one dict for the whole model
    assert a.change("HeartbeatInterval", "300").value == "Accepted"
    assert (a.get_int("HeartbeatInterval"), b.get_int("HeartbeatInterval")) == (300, 90)
    assert a.snapshot()["HeartbeatInterval"] == "300"
    assert b.snapshot()["HeartbeatInterval"] == "90"
    known, _ = a.get_configuration(["HeartbeatInterval"])
    assert known[0].value == "300"
    assert a.change("HeartbeatInterval", "90").value == "Accepted"  # back to the start
    assert a._changed == {}
    fresh = Configuration(profiles=("Core",), overrides={"HeartbeatInterval": "90"})
    assert fresh.get("HeartbeatInterval") == "90"


def test_a_rejected_override_is_rejected_for_every_wallbox() -> None:
    for _ in range(2):  # a failed template is not cached
        with pytest.raises(ConfigurationValueError, match="HeartbeatInterval"):
            Configuration(profiles=("Core",), overrides={"HeartbeatInterval": "-5"})


# ------------------------------------------------------------------------------- ledger


def test_the_outbox_ledger_counts_per_action_and_reads_as_counters() -> None:
    config = Configuration(profiles=("Core",))
    outbox = Outbox(config=config)
    outbox.enqueue(Message(action="Heartbeat", payload={}))
    outbox.enqueue(Message(action="StatusNotification", payload={"connectorId": 1}))
    call = outbox.pop_ready(0.0, boot_only=False)
    assert call is not None
    message = outbox.take_in_flight(call.unique_id)
    assert message is not None
    outbox.acknowledged(message, {}, 0.0)
    outbox.clear_normal("test")
    ledger = outbox.ledger
    assert ledger.queued == {"Heartbeat": 1, "StatusNotification": 1}
    assert ledger.sent == ledger.acknowledged == {"Heartbeat": 1}
    assert ledger.retried == {} and ledger.resent_after_disconnect == {}
    assert ledger.dropped == {"StatusNotification: test": 1}
    assert ledger.queued.total() == 2
