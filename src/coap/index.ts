export * from './errors';
export * from './message';
export * from './endpoint';
