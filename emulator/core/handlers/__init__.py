"""The charger's answers to CSMS-initiated calls, one module per OCPP 1.6 feature profile.

Every handler is ``handler(wallbox, payload, now) -> answer payload``; which action goes
to which handler is the literal table in emulator.core.csms_calls, nowhere else.
"""
