// The kubelet's side of the wire: the plugin registration service on a
// socket in the kubelet's plugins_registry folder (the kubelet's plugin
// watcher finds it there and calls GetInfo), and the DRA v1 node service on
// the plugin's own socket, which GetInfo names. Messages come from the .proto
// files in ../proto, written from Kubernetes' API definition.
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { describeError, DraError } from './errors';
import type { ClaimRef, NodeService } from './node-service';

const PROTO_DIR = path.join(__dirname, '..', 'proto');
const LOAD_OPTIONS: protoLoader.Options = { keepCase: true, longs: String, enums: String, defaults: true, oneofs: true };

function load(file: string): grpc.GrpcObject {
  return grpc.loadPackageDefinition(protoLoader.loadSync(path.join(PROTO_DIR, file), LOAD_OPTIONS));
}

/** The service version string the kubelet matches (pkg/kubelet/cm/dra/plugin/registration.go). */
export const DRA_V1_SERVICE = 'v1.DRAPlugin';

export interface PluginSockets {
  /** `<plugins_registry>/<driver>-reg.sock`. */
  readonly registration: string;
  /** `<plugin-dir>/dra.sock`. */
  readonly dra: string;
}

export interface RegistrationEvent {
  readonly registered: boolean;
  readonly error: string;
}

/** Both gRPC servers, started. `stop()` closes them and removes the sockets. */
export class PluginServers {
  private constructor(
    private readonly servers: grpc.Server[],
    readonly sockets: PluginSockets,
  ) {}

  static async start(o: {
    sockets: PluginSockets;
    driverName: string;
    service: NodeService;
    onRegistration?: (e: RegistrationEvent) => void;
  }): Promise<PluginServers> {
    const reg = (load('pluginregistration-v1.proto').pluginregistration as any).Registration as grpc.ServiceClientConstructor;
    const dra = (load('dra-v1.proto') as any).k8s.io.kubelet.pkg.apis.dra.v1.DRAPlugin as grpc.ServiceClientConstructor;

    const draServer = new grpc.Server();
    const claimsOf = (req: any): ClaimRef[] =>
      (req.claims ?? []).map((c: any) => ({ namespace: String(c.namespace), uid: String(c.uid), name: String(c.name) }));
    draServer.addService(dra.service, {
      NodePrepareResources: (call: grpc.ServerUnaryCall<any, any>, done: grpc.sendUnaryData<any>) => {
        o.service.prepare(claimsOf(call.request)).then(
          (claims) =>
            done(null, {
              claims: Object.fromEntries(
                Object.entries(claims).map(([uid, a]) => [
                  uid,
                  {
                    error: a.error,
                    devices: a.devices.map((d) => ({ request_names: d.requestNames, pool_name: d.poolName, device_name: d.deviceName, cdi_device_ids: d.cdiDeviceIds })),
                  },
                ]),
              ),
            }),
          (err) => done({ code: grpc.status.INTERNAL, details: describeError(err) }),
        );
      },
      NodeUnprepareResources: (call: grpc.ServerUnaryCall<any, any>, done: grpc.sendUnaryData<any>) => {
        o.service.unprepare(claimsOf(call.request)).then(
          (claims) => done(null, { claims }),
          (err) => done({ code: grpc.status.INTERNAL, details: describeError(err) }),
        );
      },
    });

    const regServer = new grpc.Server();
    regServer.addService(reg.service, {
      GetInfo: (_call: unknown, done: grpc.sendUnaryData<any>) =>
        done(null, { type: 'DRAPlugin', name: o.driverName, endpoint: o.sockets.dra, supported_versions: [DRA_V1_SERVICE] }),
      NotifyRegistrationStatus: (call: grpc.ServerUnaryCall<any, any>, done: grpc.sendUnaryData<any>) => {
        o.onRegistration?.({ registered: call.request.plugin_registered === true, error: String(call.request.error ?? '') });
        done(null, {});
      },
    });

    // The DRA socket first: GetInfo names it, so it must answer before the kubelet can find us.
    const started: grpc.Server[] = [];
    try {
      await bindUnix(draServer, o.sockets.dra);
      started.push(draServer);
      await bindUnix(regServer, o.sockets.registration);
      started.push(regServer);
    } catch (err) {
      for (const s of started) s.forceShutdown();
      throw err;
    }
    return new PluginServers([regServer, draServer], o.sockets);
  }

  async stop(): Promise<void> {
    // Registration first, so the kubelet stops sending calls to a plugin going away.
    for (const s of this.servers) await new Promise<void>((resolve) => s.tryShutdown(() => resolve()));
    for (const file of [this.sockets.registration, this.sockets.dra]) fs.rmSync(file, { force: true });
  }
}

function bindUnix(server: grpc.Server, socket: string): Promise<void> {
  fs.mkdirSync(path.dirname(socket), { recursive: true, mode: 0o750 });
  // A socket left by a killed plugin refuses the bind (EADDRINUSE): it is ours, remove it.
  if (fs.existsSync(socket)) {
    if (!fs.statSync(socket).isSocket()) {
      throw new DraError('DRA_SOCKET', `${socket} exists and is not a socket`, { hint: 'remove it or choose another --plugin-dir' });
    }
    fs.rmSync(socket);
  }
  return new Promise((resolve, reject) =>
    server.bindAsync(`unix://${socket}`, grpc.ServerCredentials.createInsecure(), (err) =>
      err ? reject(new DraError('DRA_SOCKET', `cannot serve gRPC on ${socket}: ${err.message}`, { cause: err })) : resolve(),
    ),
  );
}
