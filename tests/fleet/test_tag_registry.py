"""A card is at one charger at a time: the fleet's TagRegistry (sessions.shared_tags)."""

from __future__ import annotations

from emulator.fleet.runner import Fleet
from emulator.fleet.scenario import IdTagPool, Range, SessionSettings, parse_scenario
from emulator.fleet.sessions import SessionPlan, TagRegistry
from emulator.metrics import NullReporter
from tests.fleet.simulate import InstantFleet

START = 1_800_000_000.0


def _settings(**changes: object) -> SessionSettings:
    base = {
        "arrivals_per_hour": 3.0,
        "dwell_minutes": Range(20.0, 90.0),
        "id_tags": (IdTagPool(prefix="A", count=12), IdTagPool(prefix="B", count=8, share=0.5)),
        "no_show_share": 0.1,
    }
    base.update(changes)
    return SessionSettings(**base)  # type: ignore[arg-type]


def _run(
    chargers: int, registry: TagRegistry | None, hours: float = 6.0
) -> tuple[InstantFleet, list[int]]:
    """``hours`` of sessions; returns the fleet and, every minute, how many visits shared
    a card."""
    settings = _settings()
    fleet = InstantFleet(settings, count=chargers, now=START)
    for behaviour in fleet.behaviours:
        behaviour.tags = registry
    shared: list[int] = []

    def look(_: float) -> None:
        tags = [b._visit.id_tag for b in fleet.behaviours if b._visit is not None]
        shared.append(len(tags) - len(set(tags)))
        if registry is not None:
            assert registry.in_use == set(tags)

    fleet.run_until(START + hours * 3600.0, every=60.0, observe=look)
    return fleet, shared


def test_no_card_is_in_two_visits_at_once() -> None:
    registry = TagRegistry(_settings())
    fleet, shared = _run(30, registry)  # 30 chargers, 20 cards: some arrivals find none
    assert sum(shared) == 0
    started = [p for b in fleet.behaviours for p in b.plans]
    assert len(started) > 100
    assert registry.exhausted > 0  # more drivers wanted to charge than there are cards
    # Every StartTransaction went out with a card no running transaction held.
    running: set[str] = set()
    by_charger: dict[int, str] = {}
    for n, _, action, payload in fleet.sent:
        if action == "StartTransaction":
            assert payload["idTag"] not in running, payload
            running.add(payload["idTag"])
            by_charger[n] = payload["idTag"]
        elif action == "StopTransaction" and n in by_charger:
            running.discard(by_charger.pop(n))


def test_with_replacement_cards_are_shared_as_before() -> None:
    _, shared = _run(30, None)
    assert sum(shared) > 0


def test_the_registry_keeps_the_seed_reproducible() -> None:
    first, _ = _run(30, TagRegistry(_settings()), hours=3.0)
    again, _ = _run(30, TagRegistry(_settings()), hours=3.0)
    assert [b.plans for b in first.behaviours] == [b.plans for b in again.behaviours]


def test_a_card_in_use_gives_way_to_the_next_free_one_of_its_pool() -> None:
    settings = _settings()
    registry = TagRegistry(settings)
    plan = SessionPlan(
        arrival=0.0,
        id_tag="A00011",
        ev="",
        energy_wh=1.0,
        max_current=16.0,
        min_current=6.0,
        phases=3,
        taper_from=1.0,
        authorize_first=True,
        no_show=False,
        stop_by_tag=False,
        dwell=None,
    )
    first = registry.claim(plan)
    second = registry.claim(plan)
    assert first is plan
    assert second is not None and second.id_tag == "A00000"  # wraps around within pool A
    assert second.energy_wh == plan.energy_wh  # only the card differs
    for _ in range(10):
        registry.claim(plan)
    spill = registry.claim(plan)
    assert spill is not None and spill.id_tag == "B00000"  # pool A is all in use
    registry.release(first)
    assert registry.claim(plan) is plan


def test_the_fleet_holds_one_registry_unless_the_scenario_shares_tags() -> None:
    text = '[scenario]\nname = "t"\n'
    fleet = Fleet(
        scenario=parse_scenario(text, source="<t>"),
        csms_url="ws://127.0.0.1:9/ocpp",
        chargers=3,
        seed=1,
        reporter=NullReporter(),
    )
    registry = fleet.tags
    assert registry is not None
    assert all(getattr(d.behaviour, "tags", None) is registry for d in fleet.drivers)
    shared = parse_scenario(text + "[sessions]\nshared_tags = true\n", source="<t>")
    assert shared.sessions.shared_tags
    fleet = Fleet(
        scenario=shared,
        csms_url="ws://127.0.0.1:9/ocpp",
        chargers=3,
        seed=1,
        reporter=NullReporter(),
    )
    assert fleet.tags is None
