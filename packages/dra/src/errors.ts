// The one error type of the DRA layer. Core's errors (HostError and the rest)
// pass through as they are; what this layer adds (a kubeconfig that cannot be
// read, an API server that refuses, a claim this node cannot prepare) is a
// DraError with a stable code, the object it is about and the fix.
import { VfiokitError, type VfiokitErrorOptions } from '@vfiokit/core';

export class DraError extends VfiokitError {
  constructor(code: string, message: string, options: VfiokitErrorOptions = {}) {
    super(code, message, options);
  }
}

/** An API server answer that was not a success: the HTTP status and the server's own reason. */
export class KubeApiError extends DraError {
  constructor(
    readonly status: number,
    readonly reason: string,
    message: string,
    options: VfiokitErrorOptions = {},
  ) {
    super('DRA_KUBE_API', message, options);
  }
}

/** One sentence with the fix, for a claim's error string (the kubelet shows it in the pod's events). */
export function describeError(err: unknown): string {
  if (err instanceof VfiokitError) return err.hint ? `${err.message} (fix: ${err.hint})` : err.message;
  return err instanceof Error ? err.message : String(err);
}
