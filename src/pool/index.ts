export * from './pool';
export * from './channels';
export * from './outbound';
