/**
 * `mlx-rerank serve`: the lifecycle around the HTTP app (src/server/app.ts). Listen at once (so probes
 * see 503 while loading), load and warm the model, then answer; on SIGTERM/SIGINT stop accepting,
 * finish what was accepted within the deadline, release the engine and exit 0 (1 when the deadline
 * cut work short). `--workers N` runs N such processes behind one port (src/server/cluster.ts).
 */
import cluster from 'node:cluster';
import { availableParallelism } from 'node:os';
import { machine, packageVersion } from '../bench/bench';
import { pickModel } from '../bench/model';
import { CrossEncoder, type LoadOptions } from '../cross-encoder';
import { buildServer, type HttpOptions, type Server } from './app';
import { runPrimary, workerHooks } from './cluster';

export interface ServeOptions extends Omit<HttpOptions, 'version' | 'machineLine' | 'workers'> {
  /** Hugging Face id, folder, or synthetic[:tiny|:minilm-l6] (as `mlx-rerank bench --model`). */
  model: string;
  load: LoadOptions;
  offline: boolean;
  host: string;
  port: number;
  workers: number;
  /** How long a shutdown may take to finish accepted work. */
  shutdownTimeoutMs: number;
}

export interface RunningServer {
  server: Server;
  /** http://host:port actually bound. */
  url: string;
  /** Resolves once the model is loaded and warm (rejects if it cannot load). */
  loaded: Promise<void>;
  /** Drains and releases everything; resolves true when all accepted work finished in time. */
  close(): Promise<boolean>;
}

/** The dashboard's machine line: the bench report's machine description. */
function machineLine(): string {
  const m = machine();
  return `${m.cpu}, ${m.cores} cores, ${m.memoryGiB.toFixed(0)} GiB RAM, ${m.os} | GPU: ${m.gpu} | Node ${process.version}`;
}

/** Starts one server process's worth: listening at once, loading in the background. */
export async function startServer(o: ServeOptions): Promise<RunningServer> {
  const inCluster = cluster.isWorker;
  const hooks = inCluster ? workerHooks() : undefined;
  const server = buildServer(
    { ...o, version: packageVersion(), machineLine: machineLine(), workers: o.workers },
    hooks,
  );
  const { app, metrics } = server;
  hooks?.attach(metrics);
  const workerIndex = process.env.MLX_RERANK_WORKER_INDEX;
  if (inCluster && workerIndex) {
    // Which worker answered: for operators reading logs next to responses, and for the tests.
    app.addHook('onRequest', async (_req, reply) => {
      reply.header('x-worker', workerIndex);
    });
  }
  metrics.start();
  const url = await app.listen({ host: o.host, port: o.port });
  app.log.info({ url, worker: inCluster ? cluster.worker?.id : undefined }, 'listening; loading the model');

  const load: LoadOptions = { ...o.load };
  // N engines on one machine share its cores: each gets its part unless told otherwise.
  if (o.workers > 1 && load.threads === undefined && load.backend !== 'mlx') {
    load.threads = Math.max(1, Math.floor(availableParallelism() / o.workers));
  }
  let closing = false;
  const loaded = (async () => {
    const picked = await pickModel({ model: o.model, offline: o.offline, log: (line) => app.log.info(line) });
    const ce = await CrossEncoder.load(picked.source, { ...load, warmup: true });
    if (closing) {
      await ce.dispose();
      return;
    }
    server.setEncoder(ce, picked.id);
    app.log.info(
      {
        model: ce.info.modelId,
        backend: ce.info.backend,
        device: ce.info.deviceName,
        loadMs: Math.round(ce.info.loadMs),
      },
      'ready',
    );
  })();

  const close = async (): Promise<boolean> => {
    closing = true;
    server.startDraining();
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<false>((resolve) => {
      timer = setTimeout(() => resolve(false), o.shutdownTimeoutMs);
    });
    // app.close() stops accepting, closes idle keep-alive connections and waits for requests in flight.
    const drained = await Promise.race([app.close().then(() => true as const), deadline]);
    clearTimeout(timer);
    if (!drained) app.server.closeAllConnections(); // the deadline passed: cut what is left
    metrics.stop();
    metrics.detach();
    await server.encoder?.dispose();
    return drained;
  };
  return { server, url, loaded, close };
}

/** The CLI's entry: runs until a signal, then resolves with the exit code. */
export async function runServe(o: ServeOptions): Promise<number> {
  if (o.workers > 1 && cluster.isPrimary) return runPrimary(o);
  const running = await startServer(o);
  const log = running.server.app.log;
  return new Promise<number>((resolve) => {
    let stopping = false;
    const stop = (why: string, failed: boolean) => {
      if (stopping) return;
      stopping = true;
      log.info({ why }, 'shutting down: finishing accepted requests');
      running.close().then(
        (drained) => {
          if (!drained) log.error('shutdown deadline passed with requests still running');
          resolve(failed || !drained ? 1 : 0);
        },
        (err: unknown) => {
          log.error({ err }, 'shutdown failed');
          resolve(1);
        },
      );
    };
    process.once('SIGTERM', () => stop('SIGTERM', false));
    process.once('SIGINT', () => stop('SIGINT', false));
    running.loaded.then(
      () => {
        if (cluster.isWorker) process.send?.({ type: 'mlx-rerank:ready' });
      },
      (err: unknown) => {
        log.fatal({ err }, 'the model could not be loaded');
        stop('load failed', true);
      },
    );
  });
}
