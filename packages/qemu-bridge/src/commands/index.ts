export * from './queries';
export * from './probe';
export * from './fds';
