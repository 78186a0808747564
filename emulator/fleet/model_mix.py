"""Which charger model each wallbox slot gets, in any fleet size: the scenario's mix.

The standalone fleet, a Locust worker and the capacity search all grow fleets one
wallbox at a time; every prefix of :class:`ModelSequence` is a fair apportionment of the
scenario's ``[[models]]`` shares, so a fleet of any size has the mix the scenario asks for.
"""

from __future__ import annotations

from fractions import Fraction

from emulator.core.model import ChargerModel
from emulator.fleet.scenario import Scenario


class ModelSequence:
    """The model of every slot: Sainte-Laguë order over the scenario's model shares.

    Slot ``k`` goes to the model with the smallest ``(seats + 1/2) / share`` (ties to the
    model listed first).  A divisor method is house-monotone: adding a slot never takes
    one from another model, so every prefix is a fair apportionment.
    """

    def __init__(self, scenario: Scenario) -> None:
        self._models: list[ChargerModel] = [spec.to_charger_model() for spec in scenario.models]
        self._shares = [Fraction(spec.share) for spec in scenario.models]
        self._seats = [0] * len(self._models)
        self._order: list[int] = []

    def index_at(self, slot: int) -> int:
        """Index into the scenario's ``[[models]]`` of ``slot``'s model."""
        while len(self._order) <= slot:
            best = min(
                range(len(self._shares)),
                key=lambda i: ((self._seats[i] + Fraction(1, 2)) / self._shares[i], i),
            )
            self._seats[best] += 1
            self._order.append(best)
        return self._order[slot]

    def model_at(self, slot: int) -> ChargerModel:
        return self._models[self.index_at(slot)]
