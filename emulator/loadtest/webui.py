"""The Fleet tab in Locust's web UI (Locust's ``extend_web_ui`` pattern).

* ``GET /fleet/counts``: the live fleet view as JSON (summed over workers on a master);
* ``GET /fleet``: a small self-refreshing page with the same figures and the
  generator-bottleneck warning;
* a "Fleet" tab in Locust's own UI: ``extended_tabs``/``extended_tables`` in the
  template arguments, its rows added to every ``/stats/requests`` answer as
  ``extended_stats``;
* a start refused: a POST to Locust's ``/swarm`` whose form gives a bad scenario, CSMS URL,
  ... is answered ``{"success": false, "message": ...}``, as Locust answers its own form
  errors, and no test starts (no RUNNING state with no users, the error on another tab).
  Locust's swarm handler has no hook for this, so a ``before_request`` of its Flask app
  checks that one endpoint, after the web UI's own login (``--web-login``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Protocol

from flask import Blueprint, Response, jsonify, request

from emulator.loadtest.locust_internals import SWARM_ENDPOINT
from emulator.loadtest.view import rows_for_tab

__all__ = ["FleetViewSource", "install"]


class FleetViewSource(Protocol):
    """What the tab shows and which starts are refused (the role of this process)."""

    def fleet_view(self) -> dict[str, Any]:
        """The fleet counts of this process, or of every worker summed on a master."""
        ...

    def swarm_problem(self, form: Mapping[str, str]) -> str | None:
        """Why the start form's values cannot start a test, or None."""
        ...


TAB_KEY = "fleet"

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>ocpp-fleet: Fleet</title>
<style>
 body { font: 14px system-ui, sans-serif; margin: 2em; color: #222; }
 table { border-collapse: collapse; min-width: 28em; }
 td { padding: .25em 1em; border-bottom: 1px solid #ddd; }
 td:last-child { text-align: right; font-variant-numeric: tabular-nums; }
 #warning { display: none; background: #fde2e1; border: 1px solid #c0392b;
            padding: .75em 1em; margin-bottom: 1em; }
 #errors { color: #c0392b; }
</style></head>
<body>
<h1>Fleet</h1>
<div id="warning"></div>
<table id="counts"><tbody></tbody></table>
<ul id="errors"></ul>
<p><a href="./">back to Locust</a> · <a href="fleet/counts">JSON</a></p>
<script>
async function refresh() {
  try {
    const view = await (await fetch("fleet/counts")).json();
    const body = document.querySelector("#counts tbody");
    body.replaceChildren(...view.rows.map(r => {
      const tr = document.createElement("tr");
      for (const text of [r.name, r.value]) {
        const td = document.createElement("td"); td.textContent = text; tr.append(td);
      }
      return tr;
    }));
    const warning = document.getElementById("warning");
    warning.textContent = view.warning;
    warning.style.display = view.warning ? "block" : "none";
    document.getElementById("errors").replaceChildren(...view.errors.map(e => {
      const li = document.createElement("li"); li.textContent = e; return li;
    }));
  } catch (e) { /* the master restarts or the page outlives it: try again */ }
}
refresh(); setInterval(refresh, 2000);
</script>
</body></html>
"""


def install(web_ui: Any, plugin: FleetViewSource) -> None:
    """Add the routes and the tab to ``web_ui`` (Locust's WebUI) for ``plugin``'s fleet."""
    blueprint = Blueprint("ocpp_fleet", __name__)

    def view() -> dict[str, Any]:
        data = plugin.fleet_view()
        data["rows"] = list(rows_for_tab(data))
        return data

    @blueprint.route("/fleet/counts")
    def fleet_counts() -> Response:
        return jsonify(view())

    @blueprint.route("/fleet")
    def fleet_page() -> Response:
        return Response(_PAGE, mimetype="text/html")

    @web_ui.app.after_request
    def add_fleet_tab_rows(response: Response) -> Response:
        if request.path.endswith("/stats/requests") and response.is_json:
            payload = response.get_json()
            extended = [s for s in payload.get("extended_stats", []) if s.get("key") != TAB_KEY]
            extended.append({"key": TAB_KEY, "data": view()["rows"]})
            payload["extended_stats"] = extended
            response.set_data(json.dumps(payload))
        return response

    def refusal() -> Response | None:
        problem = plugin.swarm_problem(request.form)
        if problem is None:
            return None
        return jsonify({"success": False, "message": problem, "host": web_ui.environment.host})

    @web_ui.app.before_request
    def refuse_a_bad_start() -> Any:
        if request.method != "POST" or request.endpoint != SWARM_ENDPOINT:
            return None
        # Locust's login first (a refusal is not for a visitor who is not logged in).
        return web_ui.auth_required_if_enabled(refusal)()

    web_ui.app.register_blueprint(blueprint)
    args = web_ui.template_args
    args["extended_tabs"] = [
        *[t for t in args.get("extended_tabs", []) if t.get("key") != TAB_KEY],
        {"title": "Fleet", "key": TAB_KEY},
    ]
    args["extended_tables"] = [
        *[t for t in args.get("extended_tables", []) if t.get("key") != TAB_KEY],
        {
            "key": TAB_KEY,
            "structure": [{"key": "name", "title": "Fleet"}, {"key": "value", "title": "Now"}],
        },
    ]
