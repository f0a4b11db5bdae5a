export * from './events';
export { eventListener, QmpEventListener, QmpEventTimeoutError } from './event-listener';
export type { EventListenerOptions, SessionListener } from './event-listener';
export { MAX_MESSAGE_BYTES } from './framing';
export type { EventWait, ExecuteOptions, QmpExecutor } from './executor';
export { QmpSession } from './protocol';
export type { DisconnectReason, QemuVersionTriple, QmpGreeting, QmpSessionOptions } from './protocol';
export { connectQmp, describeAddress } from './transport';
export type { ConnectOptions, QmpAddress } from './transport';
