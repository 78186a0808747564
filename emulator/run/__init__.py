"""Where a run is set up, lived and reported: the floor every door stands on.

``ocpp-fleet run``, ``ocpp-fleet capacity`` and every Locust role go through the same
three steps::

    options (argparse or Locust's)  --build_setup-->  RunSetup      (setup.py, options.py)
    RunSetup  --fleet_run-->  LiveRun: the resources, one AsyncExitStack (lifecycle.py)
    LiveRun   --result_of-->  RunResult --> summary, JSON, ledger, report (outputs.py)

* :mod:`.options`: every option once, with the commands it belongs to; the CLI's and
  Locust's parsers are built from that table.
* :mod:`.setup`: :class:`~.setup.RunSetup`, the frozen, checked value; one
  :class:`~.setup.SetupError` (one line, exit 2) for every mistake, before any work.
* :mod:`.lifecycle`: the run's resources entered and left in one order (the
  Prometheus endpoint, the embedded CSMS, the fleet, signals, progress, time series).
* :mod:`.outputs`: the writers, each taking a finished run's result.
* :mod:`.search`: the capacity command (the search itself is :mod:`emulator.capacity`).
* :mod:`.commands`: ``run`` and ``capacity`` as functions of a setup.
* :mod:`.console`: what the terminal shows while a run lives.

Importing this package imports nothing else (no import side effects).
"""
