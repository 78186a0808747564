#!/usr/bin/env node
// A CSMS on the npm package ocpp-rpc in strict mode, for ocpp-fleet's compatibility tests.
//
//     node tests/compat/node/csms.js [--port 0] [--host 127.0.0.1]
//
// RPCServer with protocols ['ocpp1.6'] and strictMode: true: ocpp-rpc validates every CALL
// a charger sends and every CALLRESULT it gets back against the OCPP 1.6 JSON schemas it
// ships (ajv with ajv-formats, so date-time formats are checked too), as well as our own
// calls and answers. A frame that fails is not handed to a handler: ocpp-rpc answers it
// with a CALLERROR and emits 'strictValidationFailure', which this server prints.
//
// It answers every charger-initiated call (BootNotification Accepted, every idTag Accepted,
// StartTransaction ids from a counter; times carry a +02:00 offset) and, once a charger
// is booted, sends it the CSMS calls of sequence() followed by a RemoteStartTransaction /
// RemoteStopTransaction, like tests/compat/ocpp_lib_csms.py.
//
// Everything it sees goes to stdout, one JSON object a line ("event" says what):
// listening, connected, disconnected, call, boot, start, stop, csms_call (outcome ok,
// callerror, invalid, timeout, disconnected or error), sequence_done, and the failures the
// test counts: validation_failure, callerror_sent, bad_message. SIGTERM: stopped, exit 0.
'use strict';

const { RPCServer, createRPCError } = require('ocpp-rpc');

const HEARTBEAT_INTERVAL = 10;
const CALL_TIMEOUT_MS = 10000;
const REMOTE_START_WITHIN_MS = 9000;
const PROFILE_ID = 77;
// A multiple of 0.1 as a decimal but not in binary floating point (10.1 / 0.1 is
// 100.99999999999999): the charger's GetCompositeSchedule answer carries it back.
const PROFILE_LIMIT = 10.1;

let nextTransactionId = 1;

function emit(event, fields = {}) {
    process.stdout.write(JSON.stringify({ event, ...fields }) + '\n');
}

// ISO 8601 with an explicit +02:00 offset (not "Z"): the same instant, written as local time.
function nowWithOffset() {
    const shifted = new Date(Date.now() + 2 * 3600 * 1000);
    return shifted.toISOString().replace('Z', '+02:00');
}

function sleep(ms) {
    return new Promise((resolve) => setTimeout(resolve, ms));
}

function describe(error) {
    return String((error && (error.message || error.rpcErrorMessage)) || error).slice(0, 500);
}

function sequence() {
    return [
        ['GetConfiguration', {}],
        ['GetConfiguration', { key: ['HeartbeatInterval', 'MeterValueSampleInterval', 'NoSuchKey'] }],
        ['ChangeConfiguration', { key: 'MeterValueSampleInterval', value: '5' }],
        ['ChangeAvailability', { connectorId: 0, type: 'Operative' }],
        ['TriggerMessage', { requestedMessage: 'StatusNotification', connectorId: 1 }],
        ['TriggerMessage', { requestedMessage: 'Heartbeat' }],
        ['ClearCache', {}],
        ['GetLocalListVersion', {}],
        ['DataTransfer', { vendorId: 'org.example.compat', messageId: 'ping', data: 'hello' }],
        ['SetChargingProfile', {
            connectorId: 0,
            csChargingProfiles: {
                chargingProfileId: PROFILE_ID,
                stackLevel: 0,
                chargingProfilePurpose: 'ChargePointMaxProfile',
                chargingProfileKind: 'Absolute',
                chargingSchedule: {
                    chargingRateUnit: 'A',
                    chargingSchedulePeriod: [{ startPeriod: 0, limit: PROFILE_LIMIT }],
                    startSchedule: nowWithOffset(),
                },
            },
        }],
        ['GetCompositeSchedule', { connectorId: 0, duration: 300, chargingRateUnit: 'A' }],
        ['ClearChargingProfile', { id: PROFILE_ID }],
    ];
}

class Charger {
    constructor(client) {
        this.client = client;
        this.id = client.identity;
        this.closed = false;
        this.sequenceStarted = false;
        this.remoteStarts = new Map(); // idTag -> resolve(transactionId)
        this.failures = new Map(); // error object -> strictValidationFailure event
        this.watch();
        this.handle();
    }

    watch() {
        const client = this.client;
        client.on('call', ({ outbound, payload }) => {
            if (!outbound) emit('call', { charger: this.id, action: payload[2] });
        });
        client.on('strictValidationFailure', (ev) => {
            this.failures.set(ev.error, ev);
            emit('validation_failure', {
                charger: this.id,
                action: ev.method,
                message_type: ev.isCall ? 'CALL' : 'CALLRESULT',
                direction: ev.outbound ? 'outbound' : 'inbound',
                error: ev.error && ev.error.rpcErrorCode,
                detail: describe(ev.error),
                payload: ev.isCall ? ev.params : ev.result,
            });
        });
        client.on('callError', (ev) => {
            if (!ev.outbound) {
                emit('callerror_sent', {
                    charger: this.id,
                    action: ev.method,
                    code: ev.error && ev.error.rpcErrorCode,
                    description: describe(ev.error),
                });
            }
        });
        client.on('badMessage', ({ buffer, error, response }) => {
            emit('bad_message', {
                charger: this.id,
                error: error && error.rpcErrorCode,
                detail: describe(error),
                frame: String(buffer).slice(0, 500),
                answered: response !== null,
            });
        });
        client.on('close', ({ code }) => {
            this.closed = true;
            emit('disconnected', { charger: this.id, code });
        });
    }

    handle() {
        const client = this.client;
        const accepted = { status: 'Accepted' };
        client.handle('BootNotification', ({ params }) => {
            emit('boot', { charger: this.id, vendor: params.chargePointVendor, model: params.chargePointModel });
            if (!this.sequenceStarted) {
                this.sequenceStarted = true;
                setImmediate(() => this.runSequence());
            }
            return { status: 'Accepted', currentTime: nowWithOffset(), interval: HEARTBEAT_INTERVAL };
        });
        client.handle('Heartbeat', () => ({ currentTime: nowWithOffset() }));
        client.handle('StatusNotification', () => ({}));
        client.handle('Authorize', () => ({ idTagInfo: accepted }));
        client.handle('StartTransaction', ({ params }) => {
            const transactionId = nextTransactionId++;
            emit('start', {
                charger: this.id,
                transactionId,
                connectorId: params.connectorId,
                idTag: params.idTag,
                meterStart: params.meterStart,
                timestamp: params.timestamp,
            });
            const resolve = this.remoteStarts.get(params.idTag);
            if (resolve) {
                this.remoteStarts.delete(params.idTag);
                resolve(transactionId);
            }
            return { transactionId, idTagInfo: accepted };
        });
        client.handle('MeterValues', () => ({}));
        client.handle('StopTransaction', ({ params }) => {
            emit('stop', {
                charger: this.id,
                transactionId: params.transactionId,
                meterStop: params.meterStop,
                timestamp: params.timestamp,
                reason: params.reason ?? 'Local',
            });
            return { idTagInfo: accepted };
        });
        client.handle('DataTransfer', () => ({ status: 'UnknownVendorId' }));
        client.handle('DiagnosticsStatusNotification', () => ({}));
        client.handle('FirmwareStatusNotification', () => ({}));
        client.handle(({ method }) => {
            throw createRPCError('NotImplemented', `no handler for ${method}`);
        });
    }

    // One CALL; emits its outcome; resolves to the charger's answer if it validated.
    async ask(action, params) {
        if (this.closed) {
            emit('csms_call', { charger: this.id, action, outcome: 'disconnected' });
            return null;
        }
        try {
            const response = await this.client.call(action, params, { callTimeoutMs: CALL_TIMEOUT_MS });
            emit('csms_call', { charger: this.id, action, outcome: 'ok', response });
            return response;
        } catch (error) {
            let outcome = 'error';
            const failure = this.failures.get(error);
            if (failure) {
                outcome = failure.outbound ? 'error' : 'invalid';
            } else if (error && error.name === 'TimeoutError') {
                outcome = 'timeout';
            } else if (this.closed) {
                outcome = 'disconnected';
            } else if (error && error.rpcErrorCode) {
                outcome = 'callerror';
            }
            emit('csms_call', {
                charger: this.id,
                action,
                outcome,
                error: (error && error.rpcErrorCode) || (error && error.name),
                detail: describe(error),
            });
            return null;
        }
    }

    async runSequence() {
        await sleep(500); // let the charger finish its boot (its first StatusNotifications)
        for (const [action, params] of sequence()) {
            if (this.closed) return;
            await this.ask(action, params);
        }
        const transactionId = await this.remoteStart();
        if (transactionId !== null) {
            await sleep(1000);
            await this.ask('RemoteStopTransaction', { transactionId });
        }
        if (!this.closed) {
            emit('sequence_done', { charger: this.id, remoteTransactionId: transactionId });
        }
    }

    // RemoteStartTransaction until the charger accepts one (its connector may be busy with
    // a driver); the id of the transaction it then started, null if none did.
    async remoteStart() {
        const deadline = Date.now() + REMOTE_START_WITHIN_MS;
        for (let attempt = 1; Date.now() < deadline && !this.closed; attempt++) {
            const idTag = `REMOTE${attempt}`;
            const started = new Promise((resolve) => this.remoteStarts.set(idTag, resolve));
            const answer = await this.ask('RemoteStartTransaction', { connectorId: 1, idTag });
            if (answer && answer.status === 'Accepted') {
                const timeout = sleep(Math.max(100, deadline - Date.now())).then(() => null);
                const transactionId = await Promise.race([started, timeout]);
                this.remoteStarts.delete(idTag);
                return transactionId;
            }
            this.remoteStarts.delete(idTag);
            await sleep(1000);
        }
        return null;
    }
}

function option(name, fallback) {
    const at = process.argv.indexOf(name);
    return at >= 0 && at + 1 < process.argv.length ? process.argv[at + 1] : fallback;
}

async function main() {
    const server = new RPCServer({
        protocols: ['ocpp1.6'],
        strictMode: true,
        callTimeoutMs: CALL_TIMEOUT_MS,
    });
    server.on('client', (client) => {
        emit('connected', { charger: client.identity, protocol: client.protocol });
        new Charger(client);
    });
    server.on('upgradeAborted', ({ error, identity }) => {
        emit('bad_message', { charger: identity, error: 'upgradeAborted', detail: describe(error) });
    });
    const http = await server.listen(Number(option('--port', '0')), option('--host', '127.0.0.1'));
    emit('listening', { port: http.address().port });

    let stopping = false;
    const stop = async () => {
        if (stopping) return;
        stopping = true;
        await server.close({ code: 1001, force: true });
        emit('stopped');
        process.exit(0);
    };
    process.on('SIGTERM', stop);
    process.on('SIGINT', stop);
}

main().catch((error) => {
    process.stderr.write(`csms.js: ${error && error.stack ? error.stack : error}\n`);
    process.exit(1);
});
