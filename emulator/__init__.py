"""ocpp-fleet: fleets of emulated OCPP 1.6J AC wallboxes."""
