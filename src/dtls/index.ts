export { DtlsServer, type DtlsServerOptions, type DtlsServerStats, type HandshakeFailedInfo } from './server';
export { DtlsSession, type DtlsSessionState, type MigrationInfo, type SessionCloseReason } from './session';
export { type AuthType, type ResumptionState } from './cache';
export { type CipherSuiteName, CIPHER_SUITES } from './suites';
export { AlertDescription, alertName } from './alerts';
export { prf } from './prf';
export { ReplayWindow, REPLAY_WINDOW_SIZE } from './replay';
export { type CertificateOptions } from './certs';
