"""The embedded reference CSMS: default target of `ocpp-fleet run`, peer of integration tests."""

from emulator.csms.central_system import CentralSystem, DataTransferHandler, IdTagEntry
from emulator.csms.misbehaviour import (
    AnswerCallError,
    AnswerGarbage,
    Delay,
    DropConnection,
    Misbehaviour,
    Silence,
)
from emulator.csms.passwords import PasswordBook
from emulator.csms.records import ChargerRecord, ConnectorStatus, CsmsLedger, TransactionRecord
from emulator.csms.server import (
    CallErrorReceived,
    ChargerNotConnected,
    MisbehaviourHook,
    ReferenceCsms,
    serve_forever,
)
from emulator.csms.service import Served, parse_service_time

__all__ = [
    "AnswerCallError",
    "AnswerGarbage",
    "CallErrorReceived",
    "CentralSystem",
    "ChargerNotConnected",
    "ChargerRecord",
    "ConnectorStatus",
    "CsmsLedger",
    "DataTransferHandler",
    "Delay",
    "DropConnection",
    "IdTagEntry",
    "Misbehaviour",
    "MisbehaviourHook",
    "PasswordBook",
    "ReferenceCsms",
    "Served",
    "Silence",
    "TransactionRecord",
    "parse_service_time",
    "serve_forever",
]
