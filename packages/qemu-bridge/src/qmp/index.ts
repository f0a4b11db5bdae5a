export * from './events';
export type { EventWait, ExecuteOptions, QmpExecutor } from './executor';
export { QmpSession } from './protocol';
export type { DisconnectReason, QemuVersionTriple, QmpGreeting, QmpSessionOptions } from './protocol';
export { connectQmp, describeAddress } from './transport';
export type { ConnectOptions, QmpAddress } from './transport';
