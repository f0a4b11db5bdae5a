export * from './queries';
export * from './probe';
